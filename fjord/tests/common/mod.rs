//! Runs the real `fjord` binary: servers on ephemeral ports (launched by
//! `fjord-testkit`) and the CLI and HTTP requests against them.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod amqp;
pub mod amqp_raw;
pub mod cluster;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fjord_testkit::{Gateways, Node};

pub const BIN: &str = env!("CARGO_BIN_EXE_fjord");

/// Flags for a server without the gateways (tests that count topics).
pub const GATEWAYS_OFF: &[&str] = fjord_testkit::GATEWAYS_OFF;

/// A node of the kit with its addresses as fields (empty when a listener
/// is off), and CLI and HTTP helpers that panic on failure.
pub struct Server {
    node: Node,
    pub data: PathBuf,
    pub grpc: String,
    pub http: String,
    /// MQTT listeners (empty when off).
    pub mqtt: String,
    pub mqtt_tls: String,
    pub mqtt_ws: String,
    /// The AMQP listeners (empty when off).
    pub amqp: String,
    pub amqp_tls: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `fjord serve` on `data` with every listener on a free port,
    /// logging to `<data>.log`, and waits (bounded) for listeners.json.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// As [`Server::start`], plus `extra` flags; a listener flag among them
    /// (`--grpc-listen`, `--mqtt-listen off`, …) replaces the free port.
    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        let node = Node::builder(BIN)
            .data_dir(data)
            .log(data.with_extension("log"))
            .gateways(Gateways::ALL)
            .flags(extra.iter().copied())
            .start()
            .unwrap_or_else(|e| panic!("{e:#}"));
        Server::from(node)
    }

    pub fn kill9(mut self) {
        self.node.kill9();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.node.terminate().unwrap()
    }

    pub fn logs(&self) -> String {
        self.node.log()
    }

    /// The kit's node behind this server.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Runs a client subcommand against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_input(args, b"")
    }

    pub fn cli_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--server", &self.grpc])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Runs a client subcommand that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_input(args, b"")
    }

    pub fn ok_with_input(&self, args: &[&str], input: &[u8]) -> String {
        let out = self.cli_with_input(args, input);
        assert!(
            out.status.success(),
            "fjord {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(&self.http).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let code = response.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

impl From<Node> for Server {
    fn from(node: Node) -> Server {
        let l = node.listeners().clone();
        let addr = |a: Option<String>| a.unwrap_or_default();
        Server {
            data: node.data_dir().to_path_buf(),
            grpc: l.grpc,
            http: l.http,
            mqtt: addr(l.mqtt),
            mqtt_tls: addr(l.mqtt_tls),
            mqtt_ws: addr(l.mqtt_ws),
            amqp: addr(l.amqp),
            amqp_tls: addr(l.amqp_tls),
            log: node.log_path().map(Path::to_path_buf).unwrap_or_default(),
            node,
        }
    }
}

/// MQTT 3.1.1 clients (rumqttc) for the gateway tests: connect, then read
/// what the server sends with a bounded wait.
pub mod mqtt {
    use std::collections::VecDeque;
    use std::time::Duration;

    use rumqttc::{
        AsyncClient, ConnAck, ConnectionError, Event, MqttOptions, Packet, Publish, QoS,
        SubscribeReasonCode,
    };
    use tokio::sync::mpsc;

    /// The failure bound of every wait.
    pub const WAIT: Duration = Duration::from_secs(15);

    /// A connected client. A task polls its event loop and forwards what
    /// arrives; it stops at the first error (no reconnecting).
    pub struct Client {
        pub client: AsyncClient,
        pub connack: ConnAck,
        rx: mpsc::UnboundedReceiver<Result<Packet, ConnectionError>>,
        task: tokio::task::JoinHandle<()>,
        /// PUBLISHes that arrived while waiting for something else.
        stash: VecDeque<Publish>,
    }

    /// Options for a client of the server at `addr` ("host:port").
    pub fn options(addr: &str, id: &str, clean: bool) -> MqttOptions {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let mut o = MqttOptions::new(id, host, port.parse().unwrap());
        o.set_clean_session(clean);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o
    }

    pub async fn connect(addr: &str, id: &str, clean: bool) -> Client {
        try_connect(options(addr, id, clean)).await.unwrap()
    }

    /// Connects and reads the CONNACK; a refusal is the error.
    pub async fn try_connect(o: MqttOptions) -> Result<Client, ConnectionError> {
        let (client, mut events) = AsyncClient::new(o, 100);
        let first = tokio::time::timeout(WAIT, events.poll())
            .await
            .expect("no CONNACK in time")?;
        let Event::Incoming(Packet::ConnAck(connack)) = first else {
            panic!("expected CONNACK, got {first:?}");
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(Client {
            client,
            connack,
            rx,
            task,
            stash: VecDeque::new(),
        })
    }

    impl Client {
        /// The next packet from the server.
        pub async fn next(&mut self) -> Packet {
            match tokio::time::timeout(WAIT, self.rx.recv()).await {
                Ok(Some(Ok(p))) => p,
                Ok(Some(Err(e))) => panic!("connection failed: {e:?}"),
                Ok(None) => panic!("connection gone"),
                Err(_) => panic!("nothing received within {WAIT:?}"),
            }
        }

        /// The next packet that `pick` accepts; PUBLISHes it passes over
        /// are kept for [`Client::publish`].
        async fn next_of<T>(&mut self, mut pick: impl FnMut(&Packet) -> Option<T>) -> T {
            loop {
                let p = self.next().await;
                if let Some(t) = pick(&p) {
                    return t;
                }
                if let Packet::Publish(p) = p {
                    self.stash.push_back(p);
                }
            }
        }

        /// The next PUBLISH received.
        pub async fn publish(&mut self) -> Publish {
            if let Some(p) = self.stash.pop_front() {
                return p;
            }
            self.next_of(|p| match p {
                Packet::Publish(p) => Some(p.clone()),
                _ => None,
            })
            .await
        }

        /// The payloads of the next `n` PUBLISHes.
        pub async fn payloads(&mut self, n: usize) -> Vec<String> {
            let mut out = Vec::new();
            for _ in 0..n {
                let p = self.publish().await;
                out.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            out
        }

        /// PUBLISHes received up to and including the one with `payload`.
        pub async fn until(&mut self, payload: &str) -> Vec<Publish> {
            let mut out = Vec::new();
            loop {
                let p = self.publish().await;
                let last = p.payload == payload.as_bytes();
                out.push(p);
                if last {
                    return out;
                }
            }
        }

        /// Subscribes and waits for the SUBACK; returns its return codes.
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
            self.client.subscribe(filter, qos).await.unwrap();
            self.next_of(|p| match p {
                Packet::SubAck(s) => Some(s.return_codes.clone()),
                _ => None,
            })
            .await
        }

        /// Publishes and, for QoS 1 and 2, waits for PUBACK or PUBCOMP.
        pub async fn send(&mut self, topic: &str, qos: QoS, retain: bool, payload: &str) {
            self.client
                .publish(topic, qos, retain, payload.as_bytes().to_vec())
                .await
                .unwrap();
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    self.next_of(|p| matches!(p, Packet::PubAck(_)).then_some(()))
                        .await;
                }
                QoS::ExactlyOnce => {
                    self.next_of(|p| matches!(p, Packet::PubComp(_)).then_some(()))
                        .await;
                }
            }
        }

        /// Waits until the connection ends (the server closed it); returns
        /// how it ended.
        pub async fn closed(&mut self) -> Option<ConnectionError> {
            loop {
                match tokio::time::timeout(WAIT, self.rx.recv()).await {
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => return Some(e),
                    Ok(None) => return None,
                    Err(_) => panic!("the connection did not end within {WAIT:?}"),
                }
            }
        }

        /// Sends DISCONNECT and waits for the server to close the connection.
        pub async fn disconnect(mut self) {
            self.client.disconnect().await.unwrap();
            self.closed().await;
        }

        /// Drops the TCP connection without DISCONNECT.
        pub async fn drop_connection(mut self) {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }

    /// A dropped client's connection closes (without DISCONNECT).
    impl Drop for Client {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// A PUBLISH's (topic, payload) as text.
    pub fn text(p: &Publish) -> (String, String) {
        let payload = String::from_utf8(p.payload.to_vec()).unwrap();
        (p.topic.clone(), payload)
    }

    /// The value of the sample `name` (with its labels) in Prometheus text.
    pub fn metric(body: &str, name: &str) -> Option<f64> {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
    }
}
