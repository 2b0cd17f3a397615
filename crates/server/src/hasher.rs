//! The server's [`PasswordHasher`]: argon2 on tokio's blocking pool, at most
//! one hash per core at a time, so a burst of password checks cannot starve
//! the network tasks or exhaust memory (each argon2 run takes 19 MiB).

use std::sync::Arc;

use async_trait::async_trait;
use tessera_core::password::{self, PasswordError, PasswordHasher};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

#[derive(Debug, Clone)]
pub struct BlockingHasher {
    permits: Arc<Semaphore>,
}

impl BlockingHasher {
    pub fn new(parallelism: usize) -> Self {
        BlockingHasher { permits: Arc::new(Semaphore::new(parallelism.max(1))) }
    }

    pub fn for_this_machine() -> Self {
        Self::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
    }
}

#[async_trait]
impl PasswordHasher for BlockingHasher {
    async fn hash(&self, pw: Zeroizing<String>) -> Result<String, PasswordError> {
        let _permit = self.permits.acquire().await.map_err(|_| PasswordError::Hashing)?;
        tokio::task::spawn_blocking(move || password::hash_password(&pw)).await.map_err(|_| PasswordError::Hashing)?
    }

    async fn verify(&self, phc: Option<String>, pw: Zeroizing<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else { return false };
        tokio::task::spawn_blocking(move || match phc {
            Some(phc) => password::verify_password(&phc, &pw),
            None => {
                password::dummy_verify(&pw);
                false
            }
        })
        .await
        .unwrap_or(false)
    }
}
