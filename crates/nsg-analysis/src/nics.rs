//! The NICs of a model, compiled for analysis.

use nsg_model::Model;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::resolve::ResolveError;
use nsg_policy::{Resolver, Settings};
use nsg_tags::Catalog;

/// Every NIC of `model`, resolved against `catalog` and compiled, in the model's order.
pub fn compile_all(
    model: &Model,
    catalog: &Catalog,
    settings: Settings,
) -> Result<Vec<CompiledPolicy>, ResolveError> {
    let mut resolver = Resolver::new(model, catalog, settings);
    let policies = model
        .network_interfaces
        .iter()
        .map(|nic| resolver.resolve(nic))
        .collect::<Result<Vec<_>, _>>()?;
    let sets = std::sync::Arc::new(std::mem::take(&mut resolver.sets));
    Ok(policies
        .into_iter()
        .map(|policy| CompiledPolicy::deferred(policy, sets.clone(), settings))
        .collect())
}

/// [`compile_all`] of a diff's old and new model side by side, the old on a thread of its own.
pub fn compile_both(
    (old_model, old_catalog): (&Model, &Catalog),
    (new_model, new_catalog): (&Model, &Catalog),
    settings: Settings,
) -> Result<(Vec<CompiledPolicy>, Vec<CompiledPolicy>), ResolveError> {
    std::thread::scope(|scope| {
        let old = scope.spawn(|| compile_all(old_model, old_catalog, settings));
        let new = compile_all(new_model, new_catalog, settings);
        let old = old.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        Ok((old?, new?))
    })
}
