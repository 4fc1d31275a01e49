//! A cluster of nodes formed the way an operator forms one: node 1
//! bootstraps (`--node-id 1 --bootstrap`), and once it has its quorum of
//! one the others join through it (`--node-id <id> --join <addr>`); once
//! node 1's `fjord cluster status` lists every node live, `fjord cluster
//! rebalance --replication-factor <up to 3>` gives what node 1 made alone
//! its replicas. Also how to ask a node for that status and wait on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::flags::{bootstrap_args, join_args};
use crate::node::{Node, NodeBuilder};

/// How long forming a cluster may take, node starts aside.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags for one node, by node id.
type NodeFlags = Box<dyn Fn(u32) -> Vec<String> + Send + Sync>;

/// How to form a cluster; [`ClusterBuilder::start`] forms it.
pub struct ClusterBuilder {
    template: NodeBuilder,
    dir: PathBuf,
    size: u32,
    join: Option<String>,
    node_flags: Option<NodeFlags>,
    logs: bool,
}

impl ClusterBuilder {
    /// Joining nodes give `addr` (e.g. a proxy in front of node 1) rather
    /// than node 1's own gRPC address.
    pub fn join_via(mut self, addr: &str) -> ClusterBuilder {
        self.join = Some(addr.to_string());
        self
    }

    /// Flags for one node only, by node id (1-based), after the
    /// template's.
    pub fn node_flags(
        mut self,
        flags: impl Fn(u32) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.node_flags = Some(Box::new(flags));
        self
    }

    /// Each node writes its stdout and stderr to `<dir>/n<id>.log`.
    pub fn logs(mut self) -> ClusterBuilder {
        self.logs = true;
        self
    }

    /// Starts the nodes and waits until every one is live.
    ///
    /// # Errors
    /// A node cannot start, or the cluster does not form within 60 s.
    pub fn start(self) -> Result<Cluster> {
        let mut cluster = Cluster {
            builder: self,
            nodes: Vec::new(),
        };
        let first = cluster.spawn(1, bootstrap_args(1))?;
        // A cluster of its own before the others join (its gateways must
        // not make their topics with one replica meanwhile).
        first.wait_for_status("the first node's quorum", FORM_TIMEOUT, |s| {
            s["quorum"] == true
        })?;
        cluster.nodes.push(first);
        for _ in 1..cluster.builder.size {
            cluster.join_one()?;
        }
        let n = cluster.nodes.len();
        cluster.nodes[0].wait_for_status("every node live", FORM_TIMEOUT, |s| {
            s["nodes"]
                .as_array()
                .is_some_and(|x| x.len() == n && x.iter().all(|x| x["live"] == true))
        })?;
        if n > 1 {
            // What node 1 made while it was alone (its gateways' topics)
            // gets its replicas on the others, as an operator would do.
            let rf = n.min(3).to_string();
            cluster.nodes[0].cli(&["cluster", "rebalance", "--replication-factor", &rf])?;
        }
        Ok(cluster)
    }
}

/// Running cluster members, node `i + 1` at index `i`; dropped nodes are
/// killed. Every member restarts on its gRPC address.
pub struct Cluster {
    builder: ClusterBuilder,
    nodes: Vec<Node>,
}

impl Cluster {
    /// A cluster of `size` nodes, each started like `template` (its data
    /// directory and log aside) with its data in `<dir>/n<id>`.
    pub fn builder(template: NodeBuilder, dir: &Path, size: u32) -> ClusterBuilder {
        ClusterBuilder {
            template,
            dir: dir.to_path_buf(),
            size,
            join: None,
            node_flags: None,
            logs: false,
        }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }

    /// The members, to own one by one.
    pub fn into_nodes(self) -> Vec<Node> {
        self.nodes
    }

    /// The address joining nodes give.
    pub fn join_address(&self) -> &str {
        match &self.builder.join {
            Some(addr) => addr,
            None => self.nodes.first().map_or("", Node::grpc),
        }
    }

    /// Starts one more node that joins through [`Cluster::join_address`]
    /// (the cluster does not wait for it to be live).
    ///
    /// # Errors
    /// As [`NodeBuilder::start`].
    pub fn join_one(&mut self) -> Result<&mut Node> {
        let id = u32::try_from(self.nodes.len())? + 1;
        let node = self.spawn(id, join_args(id, self.join_address()))?;
        self.nodes.push(node);
        self.nodes.last_mut().context("a node was just added")
    }

    fn spawn(&self, id: u32, identity: Vec<String>) -> Result<Node> {
        let b = &self.builder;
        let data = b.dir.join(format!("n{id}"));
        let mut node = b.template.clone().data_dir(&data).sticky_grpc();
        if b.logs {
            node = node.log(b.dir.join(format!("n{id}.log")));
        }
        node = node.flags(identity);
        if let Some(flags) = &b.node_flags {
            node = node.flags(flags(id));
        }
        node.start()
    }
}

impl Node {
    /// Runs a `fjord` client command against this node; its standard
    /// output.
    ///
    /// # Errors
    /// The command cannot run or fails (its standard error is in the
    /// error).
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(self.binary())
            .args(args)
            .arg("--server")
            .arg(self.grpc())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.binary().display()))?;
        if !out.status.success() {
            bail!(
                "fjord {} on {} failed ({}): {}",
                args.join(" "),
                self.grpc(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `fjord cluster status --output json`, asked of this node (printed
    /// also when the command fails for want of a quorum).
    ///
    /// # Errors
    /// The command prints no JSON (the node is down, for one).
    pub fn cluster_status(&self) -> Result<Value> {
        let out = Command::new(self.binary())
            .args(["cluster", "status", "--output", "json", "--server"])
            .arg(self.grpc())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.binary().display()))?;
        // Without a quorum the command prints the status and fails.
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "fjord cluster status on {} ({}): {}",
                self.grpc(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
    }

    /// Polls [`Node::cluster_status`] until `ok` holds; returns that
    /// status. `what` names the condition in the error.
    ///
    /// # Errors
    /// `ok` does not hold within `timeout`.
    pub fn wait_for_status(
        &self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.cluster_status();
            if let Ok(s) = &status
                && ok(s)
            {
                return status;
            }
            if Instant::now() > deadline {
                let last = status.map_or_else(|e| format!("{e:#}"), |s| s.to_string());
                bail!("waited {timeout:?} for {what}; the last status: {last}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
