//! How a command runs: [`execute`] opens the transaction, answers a retry from its idempotency
//! record or runs the command through a [`CommandTx`], commits, and then applies the command's
//! effects to the devices connected here and publishes its live-feed events.

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::idempotency::{self, IdempotencyKey};
use super::{AdminCommand, Principal};
use crate::error::EngineError;
use crate::ids::{ConfigId, DeviceId, LicenseId, OrgId, Timestamp};
use crate::node::Node;
use crate::secrets::SecretCipher;
use crate::session::SessionEnd;
use crate::store::{
    ActiveDevice, AdminTx, Change, ConfigRow, EndedDevice, LicenseState, NewAudit, NewRevision,
    PairingEnd, Transaction,
};

/// What a command does its work through: its transaction, who asked, the time it runs at, and
/// what its commit must change on the devices connected here.
pub struct CommandTx<'a> {
    /// The organization's transaction, for the command's reads and writes.
    pub(crate) store: &'a mut dyn AdminTx,
    pub org_id: OrgId,
    pub principal: Principal,
    /// The time the command runs at, by the engine's clock.
    pub now: Timestamp,
    node: &'a Node,
    effects: Effects,
}

impl std::fmt::Debug for CommandTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandTx")
            .field("org_id", &self.org_id)
            .field("principal", &self.principal)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// What a committed command changes for the devices connected to this node.
#[derive(Debug, Default)]
struct Effects {
    /// New revisions: each is pushed to every device running its configuration.
    revisions: Vec<ConfigRow>,
    /// Devices now assigned a configuration.
    assignments: Vec<(ConfigRow, Vec<DeviceId>)>,
    /// Devices chosen for a staged rollout, and the revision they now run.
    staged: Vec<(ConfigRow, Vec<DeviceId>)>,
    /// Sessions to end.
    ended: Vec<(DeviceId, SessionEnd)>,
    /// Deleted configurations, to forget.
    deleted: Vec<ConfigId>,
    /// Tickets taken out of the line: their connections here are told.
    left_line: Vec<i64>,
    /// The organization's webhooks changed.
    webhooks_changed: bool,
}

impl Effects {
    fn apply(self, node: &Node, org_id: OrgId) {
        for row in self.revisions {
            let revision = node.revision(row);
            for link in node.registry.of_org(org_id) {
                link.offer(&revision);
            }
        }
        for (row, devices) in self.assignments {
            let revision = node.revision(row);
            for device in devices {
                if let Some(link) = node.registry.get(device) {
                    link.reassign(&revision);
                }
            }
        }
        for (row, devices) in self.staged {
            let revision = node.revision(row);
            for device in devices {
                if let Some(link) = node.registry.get(device) {
                    link.offer(&revision);
                }
            }
        }
        for (device, reason) in self.ended {
            if let Some(link) = node.registry.get(device) {
                link.end(reason);
            }
        }
        for config in self.deleted {
            node.configs.remove(&config);
        }
        crate::batch::line::tell_local(node, &self.left_line);
        if self.webhooks_changed {
            node.webhooks_changed(org_id);
        }
    }
}

impl CommandTx<'_> {
    /// Appends an entry about `subject` to the organization's audit log.
    pub async fn audit(
        &mut self,
        action: &str,
        subject: String,
        details: serde_json::Value,
    ) -> Result<(), EngineError> {
        self.audit_naming(action, subject, details, Vec::new())
            .await
    }

    /// Appends an entry about `subject` that names `devices` (the subject itself, or the
    /// devices the command changed): the log's device filter finds it through each of them.
    pub async fn audit_naming(
        &mut self,
        action: &str,
        subject: String,
        details: serde_json::Value,
        mut devices: Vec<DeviceId>,
    ) -> Result<(), EngineError> {
        devices.sort_unstable();
        devices.dedup();
        let entry = NewAudit {
            org_id: Some(self.org_id),
            at: self.now,
            actor: self.principal.audit_name(),
            action: action.to_string(),
            subject: Some(subject),
            details,
            devices,
        };
        let entries = [entry];
        self.store.insert_audit(&entries).await?;
        if self.node.has_webhooks(self.org_id).await {
            crate::webhooks::enqueue(self.store, self.org_id, &entries).await?;
        }
        Ok(())
    }

    /// A license of this organization, locked; any other is not found.
    pub async fn own_license(
        &mut self,
        license_id: LicenseId,
    ) -> Result<LicenseState, EngineError> {
        self.store
            .lock_licenses(&[license_id])
            .await?
            .into_iter()
            .find(|license| license.org_id == self.org_id)
            .ok_or(EngineError::NotFound("license"))
    }

    /// An active device of this organization, locked where the backend locks rows; another
    /// organization's device (or none) is not found.
    pub async fn own_device(&mut self, device_id: DeviceId) -> Result<ActiveDevice, EngineError> {
        self.store
            .active_devices(&[device_id])
            .await?
            .into_iter()
            .find(|device| device.org_id == self.org_id)
            .ok_or(EngineError::NotFound("device"))
    }

    /// What one organization may hold (`super::quota`).
    pub(crate) fn quotas(&self) -> crate::settings::Quotas {
        self.node.settings.quotas
    }

    /// The server key's cipher, for secrets that must be shown again.
    pub fn cipher(&self) -> &SecretCipher {
        &self.node.cipher
    }

    /// Keeps `row` (a configuration at a new revision) in its history, saved now by this
    /// command's principal.
    pub async fn keep_revision(&mut self, row: &ConfigRow) -> Result<(), EngineError> {
        self.store
            .insert_revision(&NewRevision {
                config_id: row.id,
                revision: row.revision,
                name: row.name.clone(),
                body: row.body.clone(),
                saved_at: self.now,
                saved_by: self.principal.audit_name(),
            })
            .await?;
        Ok(())
    }

    /// A new revision of `row`'s configuration: after the commit it reaches every device
    /// running it, here and (through the store) on other nodes.
    pub async fn push_revision(&mut self, row: ConfigRow) -> Result<(), EngineError> {
        self.store
            .publish(&Change::ConfigurationUpdated {
                org_id: self.org_id,
                config_id: row.id,
            })
            .await?;
        self.effects.revisions.push(row);
        Ok(())
    }

    /// `devices` are now assigned `row`'s configuration: after the commit they receive it.
    pub async fn reassign(
        &mut self,
        row: ConfigRow,
        devices: Vec<DeviceId>,
    ) -> Result<(), EngineError> {
        if devices.is_empty() {
            return Ok(());
        }
        self.store
            .publish(&Change::DevicesAssigned {
                org_id: self.org_id,
                device_ids: devices.clone(),
            })
            .await?;
        self.effects.assignments.push((row, devices));
        Ok(())
    }

    /// `devices` (of `row`'s configuration) now run `row`'s staged revision: after the commit
    /// they receive it.
    pub async fn stage(
        &mut self,
        row: ConfigRow,
        devices: Vec<DeviceId>,
    ) -> Result<(), EngineError> {
        if devices.is_empty() {
            return Ok(());
        }
        // Other nodes re-read these devices, staged revision included.
        self.store
            .publish(&Change::DevicesAssigned {
                org_id: self.org_id,
                device_ids: devices.clone(),
            })
            .await?;
        self.effects.staged.push((row, devices));
        Ok(())
    }

    /// These pairings ended: after the commit their devices are told why and disconnected.
    pub async fn end_sessions(
        &mut self,
        ended: &[EndedDevice],
        reason: PairingEnd,
    ) -> Result<(), EngineError> {
        if ended.is_empty() {
            return Ok(());
        }
        self.store
            .publish(&Change::DevicesEnded {
                org_id: self.org_id,
                device_ids: ended.iter().map(|device| device.device_id).collect(),
                reason,
            })
            .await?;
        self.effects.ended.extend(
            ended
                .iter()
                .map(|device| (device.device_id, SessionEnd::from(reason))),
        );
        Ok(())
    }

    /// Devices with these tickets left the organization's line: after the commit their
    /// connections are told, here and (through the store) on other nodes.
    pub async fn line_moved(&mut self, tickets: Vec<i64>) -> Result<(), EngineError> {
        self.store
            .publish(&Change::LineMoved {
                org_id: self.org_id,
            })
            .await?;
        self.effects.left_line.extend(tickets);
        Ok(())
    }

    /// The organization's webhooks changed: after the commit, this node reads again whether it
    /// has any.
    pub fn webhooks_changed(&mut self) {
        self.effects.webhooks_changed = true;
    }

    /// A deleted configuration: after the commit this node forgets its cached revision.
    pub fn forget_configuration(&mut self, config_id: ConfigId) {
        self.effects.deleted.push(config_id);
    }

    /// Runs `command`, or answers it from the record of an earlier run with the same key.
    async fn run<C: AdminCommand>(
        &mut self,
        command: &C,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<Outcome<C::Reply>, EngineError> {
        let Some(key) = idempotency else {
            return command.execute(self).await.map(Outcome::Changed);
        };
        let scope = C::idempotency_scope(&self.principal, self.org_id);
        let fingerprint = command.fingerprint();
        if let Some(stored) = self.store.idempotent_reply(&scope, &key.0).await? {
            return idempotency::replay(self.node, self.org_id, &scope, key, &stored, &fingerprint)
                .map(Outcome::Replayed);
        }
        let reply = command.execute(self).await?;
        let record = idempotency::seal(self.node, &scope, key, fingerprint, &reply)?;
        self.store
            .store_idempotent_reply(&scope, &key.0, &record, self.now)
            .await?;
        Ok(Outcome::Changed(reply))
    }
}

enum Outcome<R> {
    /// The command wrote: commit.
    Changed(R),
    /// A retry answered from its idempotency record: nothing to commit.
    Replayed(R),
}

/// Runs one command for `org_id` in a transaction of its own and answers what it decided. The
/// organization's actor calls this (see [`CommandJob`]); so does `Engine::create_organization`,
/// for the one command whose organization has no actor yet.
pub(crate) async fn execute<C: AdminCommand>(
    node: &Node,
    org_id: OrgId,
    principal: Principal,
    command: &C,
    idempotency: Option<&IdempotencyKey>,
) -> Result<C::Reply, EngineError> {
    let mut transaction: Box<dyn Transaction> = node.store.begin().await?;
    let mut tx = CommandTx {
        store: transaction.as_mut(),
        org_id,
        principal,
        now: node.clock.now(),
        node,
        effects: Effects::default(),
    };
    let outcome = tx.run(command, idempotency).await;
    let effects = std::mem::take(&mut tx.effects);
    match outcome {
        Ok(Outcome::Changed(reply)) => {
            transaction.commit().await?;
            effects.apply(node, org_id);
            node.publish_events(org_id, || command.events(&reply));
            Ok(reply)
        }
        outcome => {
            // Ended here rather than on drop, so that no row lock outlives the command.
            if let Err(error) = transaction.rollback().await {
                tracing::debug!(%error, "rollback after an admin command");
            }
            outcome.map(|outcome| match outcome {
                Outcome::Changed(reply) | Outcome::Replayed(reply) => reply,
            })
        }
    }
}

/// A command on its way to its organization's actor, with its reply channel and its type
/// erased: the actor's mailbox takes any command.
#[async_trait]
pub(crate) trait Job: Send {
    /// Runs the command; true when its commit may have freed or added licenses (the
    /// organization's waiting line is then served).
    async fn run(self: Box<Self>, node: &Node, org_id: OrgId) -> bool;
}

pub(crate) struct CommandJob<C: AdminCommand> {
    pub principal: Principal,
    pub command: C,
    pub idempotency: Option<IdempotencyKey>,
    pub reply: oneshot::Sender<Result<C::Reply, EngineError>>,
}

#[async_trait]
impl<C: AdminCommand> Job for CommandJob<C> {
    async fn run(self: Box<Self>, node: &Node, org_id: OrgId) -> bool {
        let result = execute(
            node,
            org_id,
            self.principal,
            &self.command,
            self.idempotency.as_ref(),
        )
        .await;
        let frees = C::FREES_LICENSES && result.is_ok();
        let _ = self.reply.send(result);
        frees
    }
}
