//! Where reelq may send a webhook (`notify_url`): a URL a producer names makes the workers
//! connect to it, so it must not reach what only the workers can reach. By default only
//! https URLs whose host is a public address are accepted: loopback, private, link-local
//! (including the cloud metadata address 169.254.169.254), unique-local, shared (CGNAT),
//! multicast and reserved ranges are refused, at enqueue for address literals and again
//! when sending, after resolving, for names (the worker then connects only to the addresses
//! it checked, so a name that changes its answer between the two cannot get through).
//! Deployments with internal receivers allowlist their networks; plain http is opt-in.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::SpecError;

/// The webhook target policy shared by producers (at enqueue) and workers (at send).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTargets {
    /// Accept `http://` targets too (default: https only).
    #[serde(default)]
    pub allow_http: bool,
    /// Networks allowed although not public, e.g. `10.20.0.0/16` or `127.0.0.1/32`.
    #[serde(default)]
    pub allow: Vec<IpNet>,
}

impl WebhookTargets {
    /// Checks a target URL as far as can be done without resolving its name.
    pub fn check_url(&self, field: &'static str, url: &str) -> Result<(), SpecError> {
        let parsed =
            url::Url::parse(url).map_err(|err| SpecError::new(field, format!("{url:?}: {err}")))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(SpecError::new(
                    field,
                    format!(
                        "{url:?} is plain http; webhooks go over https unless the deployment allows http"
                    ),
                ));
            }
            other => {
                return Err(SpecError::new(
                    field,
                    format!("{url:?}: scheme {other:?} is not http(s)"),
                ));
            }
        }
        let refused = |what: String| {
            Err(SpecError::new(
                field,
                format!(
                    "{url:?} {what}, which webhooks may not reach unless the deployment allows it"
                ),
            ))
        };
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) if !self.allows(ip.into()) => {
                refused(format!("names {ip}, a non-public address"))
            }
            Some(url::Host::Ipv6(ip)) if !self.allows(ip.into()) => {
                refused(format!("names {ip}, a non-public address"))
            }
            Some(url::Host::Domain(name))
                if is_localhost(name) && !self.allows(IpAddr::from([127, 0, 0, 1])) =>
            {
                refused(format!("names {name}, this host"))
            }
            None => Err(SpecError::new(field, format!("{url:?} has no host"))),
            _ => Ok(()),
        }
    }

    /// Whether a webhook may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// `localhost`, `localhost.` and names under it (RFC 6761: always this host).
fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Whether `ip` is an ordinary internet address (not loopback, private, link-local, shared,
/// unique-local, multicast, documentation or otherwise reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_broadcast()
                || ip.is_multicast()
                || ip.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return is_public(v4.into());
            }
            let first = ip.segments()[0];
            // NAT64 (64:ff9b::/96) carries an IPv4 address: judge that one.
            if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., hi, lo] = ip.segments();
                let v4 = std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
                return is_public(v4.into());
            }
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254 (metadata)
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_targets_pass_by_default() {
        let targets = WebhookTargets::default();
        for url in [
            "https://hooks.example.com/reelq",
            "https://93.184.215.14/hook",
            "https://[2606:4700::1111]/hook",
        ] {
            assert_eq!(targets.check_url("notify_url", url), Ok(()), "{url}");
        }
        for url in [
            "http://hooks.example.com/reelq",
            "https://127.0.0.1/hook",
            "https://localhost:8080/hook",
            "https://LocalHost./hook",
            "https://api.localhost/hook",
            "https://10.0.0.5/hook",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/",
            "https://[::1]/hook",
            "https://[fd00:ec2::254]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://0.0.0.0/",
            "ftp://example.com/",
        ] {
            let err = targets.check_url("notify_url", url).unwrap_err();
            assert_eq!(err.field, "notify_url", "{url}");
        }
    }

    #[test]
    fn an_allowlist_and_http_opt_in_admit_internal_receivers() {
        let targets = WebhookTargets {
            allow_http: true,
            allow: vec![
                "127.0.0.0/8".parse().unwrap(),
                "10.20.0.0/16".parse().unwrap(),
            ],
        };
        assert_eq!(
            targets.check_url("notify_url", "http://127.0.0.1:9/h"),
            Ok(())
        );
        assert_eq!(
            targets.check_url("notify_url", "http://localhost/h"),
            Ok(())
        );
        assert_eq!(
            targets.check_url("notify_url", "https://10.20.3.4/h"),
            Ok(())
        );
        assert!(
            targets
                .check_url("notify_url", "https://10.21.0.1/h")
                .is_err()
        );
        assert!(
            targets
                .check_url("notify_url", "https://169.254.169.254/")
                .is_err()
        );
    }
}
