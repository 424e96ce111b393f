//! A fixed list of addresses (`type = "static"`, `addresses = [...]`): recipients only,
//! no passwords, no groups. The store's valid-recipient lists (`portcullis list add
//! valid ...`) are checked before any source, as they always were.

use crate::{Directory, DirectoryError};
use async_trait::async_trait;
use std::collections::HashSet;

pub struct StaticList {
    name: String,
    addresses: HashSet<String>,
}

impl StaticList {
    pub fn new(name: &str, addresses: &[String]) -> Self {
        StaticList {
            name: name.to_string(),
            addresses: addresses
                .iter()
                .map(|a| a.trim().to_ascii_lowercase())
                .collect(),
        }
    }
}

#[async_trait]
impl Directory for StaticList {
    fn name(&self) -> &str {
        &self.name
    }

    async fn recipient_exists(&self, address: &str) -> Result<bool, DirectoryError> {
        Ok(self.addresses.contains(&address.to_ascii_lowercase()))
    }

    async fn authenticate(&self, _login: &str, _password: &str) -> Result<bool, DirectoryError> {
        Err(DirectoryError::Unsupported {
            source_name: self.name.clone(),
            what: "check passwords (a static list)",
        })
    }

    fn can_authenticate(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn case_insensitive() {
        let list = StaticList::new("l", &["Alice@Example.org".into()]);
        assert!(
            list.recipient_exists("alice@example.ORG")
                .await
                .expect("ok")
        );
        assert!(!list.recipient_exists("bob@example.org").await.expect("ok"));
        assert!(list.authenticate("alice@example.org", "x").await.is_err());
    }
}
