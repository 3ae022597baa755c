//! The indices of one shard (by id, by user, by channel) and the walks over the connections a
//! target list selects.

use std::sync::Arc;

use super::{Connection, FastMap, FastSet};
use crate::event::Event;
use crate::target::{ChannelName, ConnectionId, Target, Targets, UserId};
use crate::transport::outbox::{Claimed, PushError};
use crate::transport::FilterScratch;

/// The indices of one shard.
#[derive(Debug, Default)]
pub(super) struct Indices {
    pub(super) by_id: FastMap<ConnectionId, Arc<Connection>>,
    pub(super) by_user: FastMap<UserId, Vec<Arc<Connection>>>,
    pub(super) by_channel: FastMap<ChannelName, FastMap<ConnectionId, Arc<Connection>>>,
}

/// How many connections of `ix` the targets select, each once: O(1) for a single target (the
/// common case: one user, one channel), a walk only for a union.
pub(super) fn count_targets(ix: &Indices, list: &[Target]) -> usize {
    match list {
        [Target::User(u)] => ix.by_user.get(u).map_or(0, Vec::len),
        [Target::Channel(c)] => ix.by_channel.get(c).map_or(0, FastMap::len),
        [Target::Connection(id)] => usize::from(ix.by_id.contains_key(id)),
        [Target::Broadcast] => ix.by_id.len(),
        _ => visit_targets(ix, list, &mut |_| {}),
    }
}

/// Pushes `event` into the outbox of every connection of `ix` that `targets` selects (or all of
/// them when `everyone`), in each connection's wire format; collects the full ones in `slow`.
/// With `direct`, an idle connection with a direct socket is written to from this thread
/// instead ([`super::direct`]). Returns how many took it.
pub(super) fn push_to_targets(
    ix: &Indices,
    event: &Event,
    targets: &Targets,
    everyone: bool,
    direct: bool,
    slow: &mut Vec<Arc<Connection>>,
) -> u64 {
    let mut pushed = 0u64;
    let seq = event.id.seq;
    let direct = direct && super::direct::allowed();
    // Made on the first filtered connection only: plain connections pay nothing for it.
    let mut scratch: Option<FilterScratch> = None;
    let mut push = |conn: &Arc<Connection>| {
        if let Some(filter) = &conn.filter {
            if !scratch
                .get_or_insert_with(FilterScratch::default)
                .decide(filter, event)
            {
                return;
            }
        }
        let frame = event.encoded(conn.format);
        let queued = if direct {
            conn.outbox.claim(seq, frame).map(|claimed| match claimed {
                Claimed::Direct(claim) => {
                    super::direct::submit(conn, claim);
                    true
                }
                Claimed::Queued => true,
                Claimed::Dropped => false,
            })
        } else {
            conn.outbox.push_event(seq, frame)
        };
        match queued {
            Ok(true) => {
                pushed += 1;
                conn.touch();
            }
            Ok(false) | Err(PushError::Closed) => {}
            Err(PushError::Full) => slow.push(conn.clone()),
        }
    };
    if everyone {
        ix.by_id.values().for_each(&mut push);
    } else {
        visit_targets(ix, targets.list(), &mut push);
    }
    pushed
}

/// Calls `f` once for every connection the targets select and returns how many that was.
pub(super) fn visit_targets(
    ix: &Indices,
    list: &[Target],
    f: &mut impl FnMut(&Arc<Connection>),
) -> usize {
    let mut count = 0;
    if let [single] = list {
        // One target never selects a connection twice: no need to remember what was visited.
        let mut visit = |c: &Arc<Connection>| {
            count += 1;
            f(c);
        };
        match single {
            Target::User(u) => ix.by_user.get(u).into_iter().flatten().for_each(&mut visit),
            Target::Connection(id) => ix.by_id.get(id).into_iter().for_each(&mut visit),
            Target::Channel(c) => ix
                .by_channel
                .get(c)
                .into_iter()
                .flat_map(FastMap::values)
                .for_each(&mut visit),
            Target::Broadcast => ix.by_id.values().for_each(&mut visit),
        }
        return count;
    }
    let mut seen = FastSet::default();
    let mut visit = |c: &Arc<Connection>| {
        if seen.insert(c.id) {
            count += 1;
            f(c);
        }
    };
    for target in list {
        match target {
            Target::User(u) => ix.by_user.get(u).into_iter().flatten().for_each(&mut visit),
            Target::Connection(id) => ix.by_id.get(id).into_iter().for_each(&mut visit),
            Target::Channel(c) => ix
                .by_channel
                .get(c)
                .into_iter()
                .flat_map(FastMap::values)
                .for_each(&mut visit),
            Target::Broadcast => ix.by_id.values().for_each(&mut visit),
        }
    }
    count
}
