use super::*;

#[track_caller]
fn check(url: &str, expect: Result<RedisTarget, &str>) {
    let parsed = url.parse::<RedisTarget>();
    match expect {
        Ok(target) => assert_eq!(parsed, Ok(target)),
        Err(why) => assert!(
            parsed
                .as_ref()
                .is_err_and(|err| err.to_string().contains(why)),
            "{url}: {parsed:?}"
        ),
    }
}

#[test]
fn urls_name_a_primary_or_its_sentinels() {
    check(
        "redis://127.0.0.1:7000/",
        Ok(RedisTarget::Url("redis://127.0.0.1:7000/".into())),
    );
    check(
        "redis+sentinel://sentinel-a:26379,sentinel-b:26379/reelq",
        Ok(RedisTarget::Sentinel {
            sentinels: vec![
                "redis://sentinel-a:26379".into(),
                "redis://sentinel-b:26379".into(),
            ],
            master_name: "reelq".into(),
        }),
    );
    check("redis+sentinel://a:1", Err("ends with /master_name"));
    check("redis+sentinel://a:1/", Err("ends with /master_name"));
    check("redis+sentinel:///m", Err("at least one host"));
    check("http://x", Err("expected redis://"));
    check(
        "redis+cluster://n1:7000,n2:7001/",
        Ok(RedisTarget::Cluster {
            nodes: vec!["redis://n1:7000".into(), "redis://n2:7001".into()],
        }),
    );
    check("redis+cluster:///", Err("at least one host"));
    check("redis+cluster://n1:7000/0", Err("no database"));
}

#[test]
fn display_hides_the_password() {
    let target: RedisTarget = "redis://:hunter2@db:6379/0".parse().unwrap();
    assert_eq!(target.to_string(), "redis://***@db:6379/0");
}
