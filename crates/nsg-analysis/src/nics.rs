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

/// [`compile_all`] of several models at once (a diff's old and new), one per core.
pub fn compile_each(
    models: &[(&Model, &Catalog)],
    settings: Settings,
) -> Result<Vec<Vec<CompiledPolicy>>, ResolveError> {
    crate::cores::map_in_order(models, |&(model, catalog)| {
        compile_all(model, catalog, settings)
    })
    .into_iter()
    .collect()
}
