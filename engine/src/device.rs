//! The device entry points: pairing, reconnection, acknowledgement and disconnection, in the
//! engine's words ([`crate::session`]). The server's device endpoint translates the wire into
//! these calls and their answers back into the wire.
//!
//! Each call checks what it can without the database (failure limits, field caps), routes the
//! request to its organization's actor (by the code's or the installation's organization), and
//! waits for the answer, which comes after the batch that carried it committed.

use std::net::IpAddr;
use std::sync::Arc;

use crate::batch::{
    AckJob, Acknowledgement, OfflineJob, PairJob, Pairing, Reconnection, ResumeJob, ResumeReply,
};
use crate::engine::Engine;
use crate::ids::InstallationId;
use crate::limiter;
use crate::link::DeviceLink;
use crate::metrics::Counters;
use crate::org::OrgMsg;
use crate::secrets::SecretHash;
use crate::session::{
    AckAnswer, AckOutcome, AckRequest, MAX_ACK_REASON_BYTES, PairAnswer, PairRequest,
    PresentedCode, Refusal, ResumeAnswer, ResumeRequest, SessionEnd, checked_details,
};

/// How long a device is told to wait when nothing could be decided.
const RETRY_AFTER_MS: u64 = 1000;

impl Engine {
    /// Pairs an installation. The answer comes after the commit.
    pub async fn pair(&self, request: PairRequest, link: &Arc<DeviceLink>) -> PairAnswer {
        let answer = self.decide_pairing(request, link).await;
        if let PairAnswer::Refused { reason, .. } = &answer {
            self.node.counters.refused(*reason);
        }
        answer
    }

    async fn decide_pairing(&self, request: PairRequest, link: &Arc<DeviceLink>) -> PairAnswer {
        let node = &self.node;
        let now = node.clock.now();
        // A failing address is limited, never a device that proves itself: a re-pair with the
        // credential its installation paired with goes on whatever its neighbours did.
        if let Err(retry_after) = node.address_check(link.peer, now)
            && !self
                .holds_credential(request.installation_id, &request.credential_hash)
                .await
        {
            return self.rate_limited(retry_after);
        }
        let Some(details) = checked_details(request.details) else {
            node.record_failure(link.peer, now);
            return PairAnswer::refused(Refusal::Malformed);
        };
        let PresentedCode::Hash(code_hash) = request.code else {
            node.record_failure(link.peer, now);
            return PairAnswer::refused(Refusal::Malformed);
        };
        let route = match node.code_route(&code_hash).await {
            Ok(Some(route)) => route,
            Ok(None) => {
                // Unknown codes are counted, not written to the audit log one by one.
                Counters::add(&node.counters.unknown_code_attempts, 1);
                Counters::add(&node.counters.refused_pairings, 1);
                node.record_failure(link.peer, now);
                return PairAnswer::refused(Refusal::UnknownCode);
            }
            Err(error) => {
                tracing::warn!(%error, "code lookup failed");
                return PairAnswer::unavailable();
            }
        };
        if let Err(retry_after) = node.code_failures.check(&route.code_id, now) {
            return self.rate_limited(retry_after);
        }
        let pairing = Pairing {
            code_id: route.code_id,
            installation_id: request.installation_id,
            credential_hash: request.credential_hash,
            details,
            connection: link.connection_id,
            peer: link.peer,
            wait: request.wait,
            ticket: None,
        };
        let job_link = Arc::clone(link);
        let answer = self
            .actors
            .ask(route.org_id, move |reply| {
                OrgMsg::Pair(PairJob {
                    pairing,
                    link: job_link,
                    reply,
                })
            })
            .await
            .unwrap_or_else(|_| PairAnswer::unavailable());
        if let PairAnswer::Refused { reason, .. } = &answer
            && limiter::counts_as_failure(*reason)
        {
            node.record_failure_with_code(link.peer, route.code_id, now);
        }
        answer
    }

    /// Reconnects a paired installation. Never refused for its address's failures: the
    /// credential decides (a failed one counts against the address).
    pub async fn resume(&self, request: ResumeRequest, link: &Arc<DeviceLink>) -> ResumeAnswer {
        let node = &self.node;
        let now = node.clock.now();
        let Some(details) = checked_details(request.details) else {
            node.record_failure(link.peer, now);
            return ResumeAnswer::Malformed;
        };
        let unavailable = ResumeAnswer::Unavailable {
            retry_after_ms: RETRY_AFTER_MS,
        };
        let reconnection = Reconnection {
            installation_id: request.installation_id,
            credential_hash: request.credential_hash,
            details,
            connection: link.connection_id,
        };
        // Two attempts: the installation may move between lookup and decision (unpaired, then
        // paired elsewhere).
        for _ in 0..2 {
            let route = match node
                .store
                .find_installation(reconnection.installation_id)
                .await
            {
                Ok(Some(route)) => route,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "installation lookup failed");
                    return unavailable;
                }
            };
            let reply = self
                .actors
                .ask(route.org_id, |reply| {
                    OrgMsg::Resume(ResumeJob {
                        reconnection: reconnection.clone(),
                        running: request.running,
                        link: Arc::clone(link),
                        reply,
                    })
                })
                .await;
            match reply {
                Ok(ResumeReply::Answer(answer)) => {
                    if answer == ResumeAnswer::Ended(SessionEnd::AuthenticationFailed) {
                        Counters::add(&node.counters.failed_resumes, 1);
                        node.record_failure(link.peer, now);
                    }
                    return answer;
                }
                Ok(ResumeReply::NotActiveHere) => continue,
                Err(_) => return unavailable,
            }
        }
        // No active pairing: tell a device that was unpaired (or whose license expired) why, and
        // anyone else only that authentication failed.
        match node
            .store
            .last_ended_pairing(reconnection.installation_id)
            .await
        {
            Ok(Some(ended)) if ended.credential_hash.matches(&reconnection.credential_hash) => {
                ResumeAnswer::Ended(SessionEnd::from(ended.end_reason))
            }
            Ok(_) => {
                Counters::add(&node.counters.failed_resumes, 1);
                node.record_failure(link.peer, now);
                ResumeAnswer::Ended(SessionEnd::AuthenticationFailed)
            }
            Err(error) => {
                tracing::warn!(%error, "ended-pairing lookup failed");
                unavailable
            }
        }
    }

    /// Records a device's acknowledgement of a configuration revision.
    pub async fn acknowledge(&self, link: &Arc<DeviceLink>, request: AckRequest) -> AckAnswer {
        let Some(session) = link.session() else {
            return AckAnswer::NotPaired;
        };
        let status = request.outcome.status();
        let reason = match request.outcome {
            AckOutcome::Applied => None,
            AckOutcome::Failed { reason } => {
                // A NUL would be refused by a text column on PostgreSQL (and means nothing).
                if reason.len() > MAX_ACK_REASON_BYTES || reason.contains('\0') {
                    return AckAnswer::Malformed;
                }
                Some(reason)
            }
        };
        let acknowledgement = Acknowledgement {
            device_id: session.device_id,
            config_id: request.config_id,
            revision: request.revision,
            status,
            reason,
        };
        self.actors
            .ask(session.org_id, |reply| {
                OrgMsg::Ack(AckJob {
                    acknowledgement,
                    reply,
                })
            })
            .await
            .unwrap_or(AckAnswer::Unavailable)
    }

    /// The connection behind `link` ended: unregister it and record the device offline.
    pub async fn disconnected(&self, link: &Arc<DeviceLink>) {
        let waiting = link.waiting();
        let session = link.close();
        // A device that waited in line loses its place.
        if let Some((org_id, ticket)) = waiting {
            self.node.waiting.remove(&ticket);
            let _ = self
                .actors
                .send(org_id, OrgMsg::LeaveLine(vec![ticket]))
                .await;
        }
        let Some(session) = session else {
            return;
        };
        self.node.registry.remove(session.device_id, link);
        let job = OfflineJob {
            device_id: session.device_id,
            connection_id: link.connection_id,
        };
        let _ = self.actors.send(session.org_id, OrgMsg::Offline(job)).await;
    }

    /// Whether `installation_id` is paired with the credential whose hash is `credential_hash`
    /// (a lookup only a blocked address pays for).
    async fn holds_credential(
        &self,
        installation_id: InstallationId,
        credential_hash: &SecretHash,
    ) -> bool {
        match self.node.store.find_installation(installation_id).await {
            Ok(Some(route)) => route.credential_hash.matches(credential_hash),
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(%error, "installation lookup failed");
                false
            }
        }
    }

    /// Counts a failed attempt that the edge detected (an undecodable or oversized frame).
    pub fn record_failed_attempt(&self, peer: IpAddr) {
        self.node.record_failure(peer, self.node.clock.now());
    }

    fn rate_limited(&self, retry_after_ms: u64) -> PairAnswer {
        Counters::add(&self.node.counters.rate_limited, 1);
        PairAnswer::Refused {
            reason: Refusal::RateLimited,
            retry_after_ms: Some(retry_after_ms),
        }
    }
}
