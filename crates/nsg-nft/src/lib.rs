//! Kernel enforcement: resolved NSG policies as one nftables table owned by OpenNSG.
//!
//! - [`render`]: policies → [`Ruleset`] (pure).
//! - [`plan`]: two rulesets → one atomic `nft` transaction (pure).
//! - [`hits`]: the kernel's per-rule counters summed per NSG rule (pure).
//! - [`kernel`]: running `nft -j` and `conntrack` (the only IO).
//! - [`Enforcer`]: keeps the kernel's table equal to the latest rendering: applies the difference,
//!   forgets connections of NSGs with `flushConnection`, and reports and repairs drift.

pub mod hits;
pub mod kernel;
pub mod plan;
pub mod render;
pub mod ruleset;

pub use kernel::{Kernel, KernelError};
pub use plan::Difference;
pub use render::{render, render_logged, BoundNic, Rendered};
pub use ruleset::{Ruleset, Table};

use ipnet::IpNet;

/// What one apply did.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The kernel's table before, compared with the rendering applied.
    pub difference: Difference,
    /// Whether the whole table was replaced (first apply, or a change only a replacement makes).
    pub replaced_table: bool,
    /// Addresses whose connections were forgotten (`flushConnection`).
    pub forgotten: Vec<IpNet>,
}

/// Keeps OpenNSG's table in the kernel equal to the latest rendering.
pub struct Enforcer {
    kernel: Kernel,
    /// The last rendering applied, trusted as the kernel's state until the next [`reconcile`].
    ///
    /// [`reconcile`]: Enforcer::reconcile
    applied: Option<Rendered>,
}

impl Enforcer {
    pub fn new(kernel: Kernel) -> Enforcer {
        Enforcer {
            kernel,
            applied: None,
        }
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Applies `rendered` with the smallest transaction from the kernel's current table: the
    /// last applied rendering if there is one, else what the kernel lists.
    pub fn apply(&mut self, rendered: Rendered) -> Result<Applied, KernelError> {
        let listed = match &self.applied {
            Some(_) => None,
            None => self.listed(),
        };
        let current = self
            .applied
            .as_ref()
            .map(|a| &a.ruleset)
            .or(listed.as_ref());
        let applied = self.apply_over(current, self.applied.as_ref(), &rendered)?;
        // The table has changed: the rendering is the kernel's state even if forgetting fails.
        self.applied = Some(rendered);
        self.kernel.forget_connections(&applied.forgotten)?;
        Ok(applied)
    }

    /// Compares the kernel's table with the last applied rendering and repairs any difference.
    /// Returns what had drifted (empty when nothing had).
    pub fn reconcile(&self) -> Result<Difference, KernelError> {
        let Some(applied) = &self.applied else {
            return Ok(Difference::default());
        };
        let current = self.listed();
        let drift = Difference::between(
            current.as_ref().unwrap_or(&Ruleset::default()),
            &applied.ruleset,
        );
        if !drift.is_empty() {
            let repaired = self.apply_over(current.as_ref(), Some(applied), applied)?;
            self.kernel.forget_connections(&repaired.forgotten)?;
        }
        Ok(drift)
    }

    /// What differs between the kernel's table and `desired`, without changing anything.
    pub fn check(&self, desired: &Ruleset) -> Result<Difference, KernelError> {
        let current = self.kernel.current()?.unwrap_or_default();
        Ok(Difference::between(&current, desired))
    }

    /// The kernel's table, or `None` when there is none or it cannot be read back (e.g. a hand
    /// edit added constructs OpenNSG does not write): then the table is replaced whole.
    fn listed(&self) -> Option<Ruleset> {
        self.kernel.current().ok().flatten()
    }

    /// Takes the kernel's table from `current` (`None`: unknown) to `rendered` and says whose
    /// connections to forget; `previous` is the rendering applied before, whose flush settings
    /// cover the chains this change removes.
    fn apply_over(
        &self,
        current: Option<&Ruleset>,
        previous: Option<&Rendered>,
        rendered: &Rendered,
    ) -> Result<Applied, KernelError> {
        let difference =
            Difference::between(current.unwrap_or(&Ruleset::default()), &rendered.ruleset);
        let batch = match current {
            Some(current) => plan::incremental(current, &rendered.ruleset),
            None => {
                // The inet table is missing or unreadable; a bridge table may be left over.
                let bridge_table_exists =
                    matches!(self.kernel.list_raw(Table::Bridge), Ok(Some(_)));
                Some(plan::full(&rendered.ruleset, bridge_table_exists))
            }
        };
        let replaced_table =
            current.is_none() || batch.as_ref().is_some_and(|b| plan::replaces_table(b));
        if let Some(batch) = batch {
            self.kernel.apply(&batch)?;
        }
        let mut forgotten = rendered.addresses_to_flush(difference.touched_chains());
        if let Some(previous) = previous {
            forgotten.extend(previous.addresses_to_flush(&difference.chains_removed));
            forgotten.sort();
            forgotten.dedup();
        }
        Ok(Applied {
            difference,
            replaced_table,
            forgotten,
        })
    }
}
