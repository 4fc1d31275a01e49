//! The MQTT schedule's nemesis: seeded, one fault at a time, so at most
//! one node is out at any time:
//! - SIGKILL of a node, restarted a few seconds later with the same flags
//!   and data (its clients move to another node);
//! - SIGSTOP of a node for a few seconds (its clients' connections hang;
//!   its leaderships move away), then SIGCONT;
//! - a network partition cutting a node off from the others for a few
//!   seconds through the proxies (its clients stay connected to a node
//!   that cannot reach the quorum), then healed.
//!
//! The victim is the node a subscriber or a publisher is connected to, the
//! leader of `__mqtt_sessions`-0 (where sessions are kept), the leader of
//! `mqtt`-0 (where messages are appended), or any node (the AMQP schedule
//! aims at its own topics' leaders, see [`Aim`]). The draws from the
//! seeded generator happen in the same order whatever is chosen, so a seed
//! replays the same schedule (the roles it names depend on the run).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fjord_testkit::Node;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Fault;
use crate::mqtt::cluster::{leader_of, mqtt_address};
use crate::mqtt::session::{Connections, Net};
use crate::proxy::{self, Proxy};

/// Injects faults for `duration`; hands the nodes back, all running and
/// connected.
///
/// # Errors
/// A killed node cannot be restarted, or a paused one resumed.
pub async fn run(
    nodes: &mut Vec<Node>,
    proxies: &[Proxy],
    net: &Net,
    seed: u64,
    duration: Duration,
) -> Result<Vec<Fault>> {
    let aim = Aim {
        leaders: vec!["__mqtt_sessions".to_string(), "mqtt".to_string()],
        address: mqtt_address,
        kills_only: false,
    };
    run_aimed(nodes, proxies, net, seed, duration, &aim).await
}

/// What a nemesis aims at besides the clients' nodes.
pub struct Aim {
    /// Topics whose partition 0's leader is a victim: the first more
    /// often than the second.
    pub leaders: Vec<String>,
    /// The client address of a (restarted) node.
    pub address: fn(&Node) -> Result<String>,
    /// Only SIGKILLs (no pauses, no partitions).
    pub kills_only: bool,
}

/// As [`run`], aimed at `aim`'s leaders, publishing `aim`'s addresses.
///
/// # Errors
/// As [`run`].
pub async fn run_aimed(
    nodes: &mut Vec<Node>,
    proxies: &[Proxy],
    net: &Net,
    seed: u64,
    duration: Duration,
    aim: &Aim,
) -> Result<Vec<Fault>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut faults = Vec::new();
    while start.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..3000))).await;
        let at = start.elapsed();
        let (victim, role) = pick_victim(nodes, proxies, &net.connections, aim, &mut rng).await;
        let lasting = Duration::from_millis(rng.random_range(2000..3000));
        let kind: f64 = rng.random();
        let id = victim + 1;
        let ms = lasting.as_millis();
        let what = if kind < 0.6 || aim.kills_only {
            nodes[victim].kill9();
            tokio::time::sleep(lasting).await;
            restart(nodes, victim, net, aim).await?;
            format!("SIGKILL node {id} ({role}), restart after {ms} ms")
        } else if kind < 0.8 {
            nodes[victim].pause()?;
            tokio::time::sleep(lasting).await;
            nodes[victim].resume()?;
            format!("SIGSTOP node {id} ({role}) for {ms} ms")
        } else {
            proxy::partition(proxies, &[id]);
            tokio::time::sleep(lasting).await;
            proxy::heal(proxies);
            format!("partition node {id} ({role}) from the others for {ms} ms")
        };
        faults.push(Fault { at, what });
    }
    Ok(faults)
}

/// Restarts node `i` (waiting until it is ready) and publishes its client
/// address.
async fn restart(nodes: &mut Vec<Node>, i: usize, net: &Net, aim: &Aim) -> Result<()> {
    let mut node = nodes.remove(i);
    let restarted = tokio::task::spawn_blocking(move || node.restart().map(|()| node)).await?;
    let node = restarted.with_context(|| format!("restart node {}", i + 1))?;
    let addr = (aim.address)(&node)?;
    nodes.insert(i, node);
    if let Ok(mut a) = net.addresses.lock()
        && let Some(slot) = a.get_mut(i)
    {
        *slot = addr;
    }
    Ok(())
}

/// The node (index) to kill, and why it was chosen.
async fn pick_victim(
    nodes: &[Node],
    proxies: &[Proxy],
    connections: &Connections,
    aim: &Aim,
    rng: &mut StdRng,
) -> (usize, String) {
    let any = rng.random_range(0..nodes.len());
    let roll: f64 = rng.random();
    let pick: usize = rng.random_range(0..1000);
    let chosen = if roll < 0.55 {
        // A subscriber's node, or (less often) a publisher's.
        let connected = clients_of(connections, roll >= 0.4);
        connected
            .get(pick % connected.len().max(1))
            .map(|(id, node)| (*node, format!("{id}'s node")))
    } else if roll < 0.85 {
        let topic = aim.leaders.get(usize::from(roll >= 0.75));
        match topic {
            Some(t) => leader_of(nodes, proxies, t, 0)
                .await
                .map(|i| (i, format!("the leader of {t}-0"))),
            None => None,
        }
    } else {
        None
    };
    chosen
        .filter(|(i, _)| *i < nodes.len())
        .unwrap_or((any, "a node".to_string()))
}

/// The publishers (or the subscribers) connected now, and their nodes.
fn clients_of(connections: &Connections, publishers: bool) -> Vec<(String, usize)> {
    connections
        .snapshot()
        .into_iter()
        .filter(|(id, _)| id.starts_with("pub-") == publishers)
        .collect()
}
