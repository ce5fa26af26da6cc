//! Settings of the Azure platform that change verdicts but are not part of any resource.

use std::fmt;
use std::str::FromStr;

/// The subscription's offer type, which decides whether outbound TCP 25 to the internet is
/// blocked (reference §3.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SubscriptionType {
    /// Enterprise Agreement: not blocked. The default, as design.md decides.
    #[default]
    EnterpriseAgreement,
    /// Enterprise Agreement Dev/Test: blocked by default.
    EnterpriseDevTest,
    /// Pay-as-you-go: blocked.
    PayAsYouGo,
    /// MSDN, Azure Pass, Azure in Open, Education, BizSpark and free trial: blocked.
    Msdn,
    /// Cloud Solution Provider: blocked.
    CloudServiceProvider,
    /// Subscriptions created before 15 November 2017: not blocked.
    Legacy,
}

impl SubscriptionType {
    pub const ALL: [SubscriptionType; 6] = [
        SubscriptionType::EnterpriseAgreement,
        SubscriptionType::EnterpriseDevTest,
        SubscriptionType::PayAsYouGo,
        SubscriptionType::Msdn,
        SubscriptionType::CloudServiceProvider,
        SubscriptionType::Legacy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionType::EnterpriseAgreement => "EnterpriseAgreement",
            SubscriptionType::EnterpriseDevTest => "EnterpriseDevTest",
            SubscriptionType::PayAsYouGo => "PayAsYouGo",
            SubscriptionType::Msdn => "Msdn",
            SubscriptionType::CloudServiceProvider => "CloudServiceProvider",
            SubscriptionType::Legacy => "Legacy",
        }
    }

    /// Whether outbound TCP 25 to the internet is blocked for this subscription type.
    pub fn blocks_smtp(self) -> bool {
        !matches!(
            self,
            SubscriptionType::EnterpriseAgreement | SubscriptionType::Legacy
        )
    }
}

impl fmt::Display for SubscriptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriptionType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SubscriptionType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = SubscriptionType::ALL.iter().map(|t| t.as_str()).collect();
                format!(
                    "unknown subscription type '{s}': expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Platform settings the evaluator needs besides the resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub subscription_type: SubscriptionType,
}
