//! Which rows a bulk command changes: a list of ids, the rows a fleet filter matches, or all of
//! the organization's rows. Ids of another organization, or of no row, simply do not match.

use serde::Serialize;
use serde_json::json;

use super::CommandTx;
use crate::error::EngineError;
use crate::ids::{DeviceId, LicenseId};
use crate::model::FleetFilter;

/// Most ids one bulk command takes.
pub const MAX_IDS_PER_BULK_COMMAND: usize = 10_000;

/// The rows a bulk command changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection<Id> {
    /// These rows (1 to [`MAX_IDS_PER_BULK_COMMAND`]).
    Ids(Vec<Id>),
    /// The rows the filter matches; it must have a criterion.
    Filter(FleetFilter),
    /// Every row of the organization.
    All,
}

impl<Id: Serialize + Copy + Ord> Selection<Id> {
    /// Refuses an empty or oversized list (naming `ids_field`) and an empty filter, so that a
    /// mistake never reaches every row.
    pub(crate) fn check(&self, ids_field: &'static str) -> Result<(), EngineError> {
        match self {
            Selection::Ids(ids) if ids.is_empty() || ids.len() > MAX_IDS_PER_BULK_COMMAND => {
                Err(EngineError::invalid(
                    ids_field,
                    format!("from 1 to {MAX_IDS_PER_BULK_COMMAND} ids"),
                ))
            }
            Selection::Filter(filter) if filter.is_empty() => Err(EngineError::invalid(
                "filter",
                "at least one criterion, or \"all\": true",
            )),
            _ => Ok(()),
        }
    }

    /// The ids, each once, in order.
    fn unique_ids(ids: &[Id]) -> Vec<Id> {
        let mut unique = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        unique
    }

    /// What an audit entry says of the selection: the filter, `all`, or the ids (when few).
    pub(crate) fn described(&self, ids_field: &str) -> serde_json::Value {
        match self {
            Selection::Ids(ids) if ids.len() <= LISTED_IDS => json!({ ids_field: ids }),
            Selection::Ids(ids) => json!({ ids_field: null, "ids_given": ids.len() }),
            Selection::Filter(filter) => json!({ "filter": filter }),
            Selection::All => json!({ "all": true }),
        }
    }
}

/// How many ids an audit entry lists.
const LISTED_IDS: usize = 100;

impl Selection<DeviceId> {
    /// The organization's active devices selected, in id order.
    pub(crate) async fn devices(
        &self,
        tx: &mut CommandTx<'_>,
    ) -> Result<Vec<DeviceId>, EngineError> {
        self.check("device_ids")?;
        let filter = match self {
            Selection::Ids(ids) => {
                let unique = Self::unique_ids(ids);
                let mut found: Vec<DeviceId> = tx
                    .store
                    .active_devices(&unique)
                    .await?
                    .into_iter()
                    .filter(|device| device.org_id == tx.org_id)
                    .map(|device| device.id)
                    .collect();
                found.sort_unstable();
                return Ok(found);
            }
            Selection::Filter(filter) => filter.clone(),
            Selection::All => FleetFilter::default(),
        };
        Ok(tx
            .store
            .matching_devices(tx.org_id, &filter, tx.now)
            .await?)
    }
}

impl Selection<LicenseId> {
    /// The organization's licenses selected, in id order.
    pub(crate) async fn licenses(
        &self,
        tx: &mut CommandTx<'_>,
    ) -> Result<Vec<LicenseId>, EngineError> {
        self.check("license_ids")?;
        let filter = match self {
            Selection::Ids(ids) => {
                let unique = Self::unique_ids(ids);
                let mut found: Vec<LicenseId> = tx
                    .store
                    .lock_licenses(&unique)
                    .await?
                    .into_iter()
                    .filter(|license| license.org_id == tx.org_id)
                    .map(|license| license.id)
                    .collect();
                found.sort_unstable();
                return Ok(found);
            }
            Selection::Filter(filter) => filter.clone(),
            Selection::All => FleetFilter::default(),
        };
        Ok(tx
            .store
            .matching_licenses(tx.org_id, &filter, tx.now)
            .await?)
    }
}
