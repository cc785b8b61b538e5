//! API tokens an operator makes (`reelq tokens`): each bound to one tenant, or to every
//! tenant, with some scopes. The ledger keeps only each token's SHA-256, never the token:
//! `P tokens` maps the hash to the token's record, `P token_names` its name to the hash.

use reelq_core::{Scope, TenantName};
use serde::{Deserialize, Serialize};

use crate::{Ledger, QueueError};

/// What a token may do, as the ledger keeps it (under the token's hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The operator's name for it, unique in the deployment.
    pub name: String,
    /// The one tenant whose jobs it enqueues and sees; None: every tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantName>,
    pub scopes: Vec<Scope>,
    pub created_ms: u64,
}

impl Ledger {
    /// Records a token by its hash; refused if its name is taken.
    pub async fn add_token(&self, hash: &str, record: &TokenRecord) -> Result<(), QueueError> {
        let mut conn = self.home_conn().await?;
        let fresh: bool = redis::cmd("HSETNX")
            .arg(self.home_key("token_names"))
            .arg(&record.name)
            .arg(hash)
            .query_async(&mut conn)
            .await?;
        if !fresh {
            return Err(QueueError::TokenName(record.name.clone()));
        }
        let json =
            serde_json::to_string(record).map_err(|err| QueueError::corrupt("a token", err))?;
        let _: () = redis::cmd("HSET")
            .arg(self.home_key("tokens"))
            .arg(hash)
            .arg(json)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The token whose hash is `hash`, if one was made and not revoked.
    pub async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, QueueError> {
        let json: Option<String> = redis::cmd("HGET")
            .arg(self.home_key("tokens"))
            .arg(hash)
            .query_async(&mut self.home_conn().await?)
            .await?;
        json.map(|json| {
            serde_json::from_str(&json).map_err(|err| QueueError::corrupt("a token", err))
        })
        .transpose()
    }

    /// Every token, by name.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, QueueError> {
        let records: Vec<String> = redis::cmd("HVALS")
            .arg(self.home_key("tokens"))
            .query_async(&mut self.home_conn().await?)
            .await?;
        let mut records = records
            .iter()
            .map(|json| {
                serde_json::from_str(json).map_err(|err| QueueError::corrupt("a token", err))
            })
            .collect::<Result<Vec<TokenRecord>, _>>()?;
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Revokes the token named `name`: refused from its next request on. False if there
    /// is none.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, QueueError> {
        let mut conn = self.home_conn().await?;
        let hash: Option<String> = redis::cmd("HGET")
            .arg(self.home_key("token_names"))
            .arg(name)
            .query_async(&mut conn)
            .await?;
        let Some(hash) = hash else {
            return Ok(false);
        };
        let _: () = redis::pipe()
            .atomic()
            .cmd("HDEL")
            .arg(self.home_key("tokens"))
            .arg(&hash)
            .ignore()
            .cmd("HDEL")
            .arg(self.home_key("token_names"))
            .arg(name)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(true)
    }
}
