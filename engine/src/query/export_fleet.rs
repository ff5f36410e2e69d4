//! One chunk of a CSV export of the fleet lists: the organization's devices or its licenses,
//! filtered and sorted as the lists are, read a chunk at a time with the lists' keyset cursor.
//! The server writes each chunk to the response and asks for the next one, so that an export
//! of any size holds one chunk in memory. Each row carries what the export shows beside the
//! list's row: the device's revision state (decided here, by the domain) and the label of the
//! code that paired it.

use std::collections::HashMap;

use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::{CodeId, Timestamp};
use crate::model::{
    Device, FleetFilter, FleetQuery, FleetRows, FleetSort, License, PageRequest, RevisionState,
};

#[derive(Debug, Clone)]
pub struct ExportFleet {
    /// Devices (one row per device) or licenses (one row per license).
    pub rows: FleetRows,
    pub filter: FleetFilter,
    pub sort: FleetSort,
    pub descending: bool,
    /// The `next_cursor` of the previous chunk; `None` for the first.
    pub after: Option<String>,
}

impl ExportFleet {
    /// Rows read at a time.
    pub const CHUNK_ROWS: u32 = 1000;
}

/// A row of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub license: License,
    pub device: Option<Device>,
    /// The device's revision state (`None` without a device or without a configuration).
    pub revision: Option<RevisionState>,
    /// The label of the code that paired the device, if it has one.
    pub paired_by_label: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportChunk {
    pub rows: Vec<ExportRow>,
    /// Where the next chunk starts; `None` after the last.
    pub next_cursor: Option<String>,
    /// When it was read, by the engine's clock.
    pub at: Timestamp,
}

impl Query for ExportFleet {
    type Answer = ExportChunk;

    async fn read(&self, reader: &Reader<'_>) -> Result<ExportChunk, EngineError> {
        let query = FleetQuery {
            rows: self.rows,
            filter: self.filter.clone(),
            sort: self.sort,
            descending: self.descending,
            page: PageRequest {
                limit: Self::CHUNK_ROWS,
                after: self.after.clone(),
            },
            export: true,
        };
        let page = reader
            .store
            .fleet(reader.org_id(), &query, reader.now)
            .await?;
        // The labels of the codes that paired this chunk's devices: few distinct codes, each
        // read once.
        let mut labels: HashMap<CodeId, Option<String>> = HashMap::new();
        let mut rows = Vec::with_capacity(page.items.len());
        for item in page.items {
            let mut paired_by_label = None;
            if let Some(code_id) = item.device.as_ref().and_then(|d| d.paired_by_code) {
                if let std::collections::hash_map::Entry::Vacant(entry) = labels.entry(code_id) {
                    let code = reader
                        .store
                        .code(reader.org_id(), code_id, reader.now)
                        .await?;
                    entry.insert(code.and_then(|code| code.label));
                }
                paired_by_label = labels[&code_id].clone();
            }
            rows.push(ExportRow {
                revision: item.device.as_ref().and_then(Device::revision_state),
                license: item.license,
                device: item.device,
                paired_by_label,
            });
        }
        Ok(ExportChunk {
            rows,
            next_cursor: page.next_cursor,
            at: reader.now,
        })
    }
}
