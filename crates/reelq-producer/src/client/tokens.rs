//! API tokens an operator makes for producers (`reelq tokens`): a random token shown once,
//! kept in the ledger only as its SHA-256, bound to a tenant (or to all) and some scopes.

use reelq_core::{Scope, TenantName};
use reelq_queue::TokenRecord;
use sha2::{Digest, Sha256};

use super::{Client, ProducerError, now_ms};

/// How a presented token is looked up: its SHA-256, hex.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Client {
    /// Makes a token named `name` for `tenant` (None: every tenant) with `scopes`, and
    /// returns it: the only time it is shown.
    pub async fn create_token(
        &self,
        name: &str,
        tenant: Option<TenantName>,
        scopes: Vec<Scope>,
    ) -> Result<String, ProducerError> {
        let token = format!("rq_{}", hex::encode(rand::random::<[u8; 32]>()));
        let record = TokenRecord {
            name: name.to_owned(),
            tenant,
            scopes,
            created_ms: now_ms(),
        };
        self.ledger.add_token(&token_hash(&token), &record).await?;
        Ok(token)
    }

    /// What `presented` may do, if it is a token an operator made and did not revoke.
    pub async fn token(&self, presented: &str) -> Result<Option<TokenRecord>, ProducerError> {
        Ok(self.ledger.token(&token_hash(presented)).await?)
    }

    /// Every token an operator made, by name (never the tokens themselves).
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, ProducerError> {
        Ok(self.ledger.tokens().await?)
    }

    /// Revokes the token named `name`; false if there is none.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, ProducerError> {
        Ok(self.ledger.revoke_token(name).await?)
    }
}
