//! An app's scaling settings (k8sTicket's Deployment annotations).

use std::time::Duration;

/// Settings that drive ticket capacity and scaling for one app.
///
/// Defaults are k8sTicket's: 1 ticket per pod, 2 spare tickets, at most 1
/// autoscaled pod, 10 s cooldown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    /// Tickets (users) per pod.
    pub tickets_max: u32,
    /// Free tickets to keep available ahead of demand.
    pub tickets_spare: u32,
    /// Most autoscaled pods (on top of the Deployment's own replicas).
    pub pods_max: u32,
    /// How long an autoscaled pod must be idle before it may be deleted.
    pub cooldown: Duration,
    /// Opaque parameters handed to the policy.
    pub policy_config: String,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            tickets_max: 1,
            tickets_spare: 2,
            pods_max: 1,
            cooldown: Duration::from_secs(10),
            policy_config: String::new(),
        }
    }
}

/// Settings that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A pod that holds no tickets can never serve anyone.
    #[error("tickets.max must be at least 1")]
    ZeroTicketsMax,
    /// The cooldown is also the scale-down check interval.
    #[error("pods.cooldown must be at least 1 second")]
    ZeroCooldown,
}

impl AppSettings {
    /// Checks the settings for values no app can run with.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.tickets_max == 0 {
            return Err(SettingsError::ZeroTicketsMax);
        }
        if self.cooldown.is_zero() {
            return Err(SettingsError::ZeroCooldown);
        }
        Ok(())
    }
}
