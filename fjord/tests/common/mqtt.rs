//! MQTT clients (rumqttc; 3.1.1 here, 5 in `mqtt_v5.rs`) for the
//! gateway tests: connect, then read what the server sends with a bounded
//! wait.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnAck, ConnectionError, EventLoop, MqttOptions, Packet, Publish, QoS,
    SubscribeReasonCode,
};
use tokio::sync::mpsc;

use super::Server;

/// The failure bound of every wait.
pub const WAIT: Duration = Duration::from_secs(15);

/// A rumqttc event loop (3.1.1 or 5), as an [`Inbox`] polls it.
pub trait Events: Send + 'static {
    type Packet: Incoming;
    type Error: Send + Debug + 'static;

    /// The next event: an incoming packet, or `None` for an outgoing one.
    fn next_event(
        &mut self,
    ) -> impl Future<Output = Result<Option<Self::Packet>, Self::Error>> + Send;
}

/// A rumqttc packet type (3.1.1 or 5).
pub trait Incoming: Debug + Send + 'static {
    type Publish: Clone + Debug;

    fn as_publish(&self) -> Option<&Self::Publish>;
    fn into_publish(self) -> Option<Self::Publish>;
    fn payload(p: &Self::Publish) -> &[u8];
}

/// What the server sends on one connection: a task polls the client's
/// event loop and forwards incoming packets; it stops at the first error
/// (no reconnecting). Dropping the inbox drops the connection (without
/// DISCONNECT).
pub struct Inbox<E: Events> {
    rx: mpsc::UnboundedReceiver<Result<E::Packet, E::Error>>,
    task: tokio::task::JoinHandle<()>,
    /// PUBLISHes that arrived while waiting for something else.
    stash: VecDeque<<E::Packet as Incoming>::Publish>,
}

impl<E: Events> Inbox<E> {
    /// Waits (bounded) for the first packet (the CONNACK, or the error
    /// that refused the connection), then forwards the rest.
    pub async fn start(mut events: E) -> Result<(E::Packet, Inbox<E>), E::Error> {
        let first = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(p) = events.next_event().await? {
                    return Ok(p);
                }
            }
        })
        .await
        .expect("no CONNACK in time")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match events.next_event().await {
                    Ok(Some(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let inbox = Inbox {
            rx,
            task,
            stash: VecDeque::new(),
        };
        Ok((first, inbox))
    }

    /// The next packet from the server.
    pub async fn next(&mut self) -> E::Packet {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Some(Ok(p))) => p,
            Ok(Some(Err(e))) => panic!("connection failed: {e:?}"),
            Ok(None) => panic!("connection gone"),
            Err(_) => panic!("nothing received within {WAIT:?}"),
        }
    }

    /// The next packet that `pick` accepts; PUBLISHes it passes over are
    /// kept for [`Inbox::publish`].
    pub async fn next_of<T>(&mut self, mut pick: impl FnMut(&E::Packet) -> Option<T>) -> T {
        loop {
            let p = self.next().await;
            if let Some(t) = pick(&p) {
                return t;
            }
            if let Some(p) = p.into_publish() {
                self.stash.push_back(p);
            }
        }
    }

    /// The next PUBLISH received.
    pub async fn publish(&mut self) -> <E::Packet as Incoming>::Publish {
        if let Some(p) = self.stash.pop_front() {
            return p;
        }
        self.next_of(|p| p.as_publish().cloned()).await
    }

    /// PUBLISHes received up to and including the one with `payload`.
    pub async fn until(&mut self, payload: &str) -> Vec<<E::Packet as Incoming>::Publish> {
        let mut out = Vec::new();
        loop {
            let p = self.publish().await;
            let last = E::Packet::payload(&p) == payload.as_bytes();
            out.push(p);
            if last {
                return out;
            }
        }
    }

    /// Waits until the connection ends (the server closed it); returns
    /// how it ended.
    pub async fn closed(&mut self) -> Option<E::Error> {
        loop {
            match tokio::time::timeout(WAIT, self.rx.recv()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Some(e),
                Ok(None) => return None,
                Err(_) => panic!("the connection did not end within {WAIT:?}"),
            }
        }
    }

    /// Drops the TCP connection without DISCONNECT.
    pub async fn drop_connection(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl<E: Events> Drop for Inbox<E> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// [`Events`] and [`Incoming`] for one of rumqttc's clients (3.1.1 at the
/// crate root, 5 under `v5`): the same code over each one's own types.
macro_rules! rumqttc_client {
    ($module:ident: $($uses:item)*) => {
        mod $module {
            $($uses)*

            impl super::Events for EventLoop {
                type Packet = Packet;
                type Error = ConnectionError;

                async fn next_event(&mut self) -> Result<Option<Packet>, ConnectionError> {
                    match self.poll().await? {
                        Event::Incoming(p) => Ok(Some(p)),
                        Event::Outgoing(_) => Ok(None),
                    }
                }
            }

            impl super::Incoming for Packet {
                type Publish = Publish;

                fn as_publish(&self) -> Option<&Publish> {
                    match self {
                        Packet::Publish(p) => Some(p),
                        _ => None,
                    }
                }

                fn into_publish(self) -> Option<Publish> {
                    match self {
                        Packet::Publish(p) => Some(p),
                        _ => None,
                    }
                }

                fn payload(p: &Publish) -> &[u8] {
                    &p.payload
                }
            }
        }
    };
}

rumqttc_client!(v3: use rumqttc::{ConnectionError, Event, EventLoop, Packet, Publish};);
rumqttc_client!(v5:
    use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
    use rumqttc::v5::{ConnectionError, Event, EventLoop};
);

/// A connected MQTT 3.1.1 client.
pub struct Client {
    pub client: AsyncClient,
    pub connack: ConnAck,
    inbox: Inbox<EventLoop>,
}

/// How long a CONNACK may take.
const CONNECT_TIMEOUT_SECS: u64 = 20;

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
    // A session that moves waits for its previous node's hand-over: on a
    // loaded machine that can take longer than the client's default 5 s.
    events
        .network_options
        .set_connection_timeout(CONNECT_TIMEOUT_SECS);
    let (first, inbox) = Inbox::start(events).await?;
    let Packet::ConnAck(connack) = first else {
        panic!("expected CONNACK, got {first:?}");
    };
    Ok(Client {
        client,
        connack,
        inbox,
    })
}

impl Client {
    /// The next packet from the server.
    pub async fn next(&mut self) -> Packet {
        self.inbox.next().await
    }

    /// The next PUBLISH received.
    pub async fn publish(&mut self) -> Publish {
        self.inbox.publish().await
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
        self.inbox.until(payload).await
    }

    /// Subscribes and waits for the SUBACK; returns its return codes.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.client.subscribe(filter, qos).await.unwrap();
        self.inbox
            .next_of(|p| match p {
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
                self.inbox
                    .next_of(|p| matches!(p, Packet::PubAck(_)).then_some(()))
                    .await;
            }
            QoS::ExactlyOnce => {
                self.inbox
                    .next_of(|p| matches!(p, Packet::PubComp(_)).then_some(()))
                    .await;
            }
        }
    }

    /// Waits until the connection ends (the server closed it); returns
    /// how it ended.
    pub async fn closed(&mut self) -> Option<ConnectionError> {
        self.inbox.closed().await
    }

    /// Sends DISCONNECT and waits for the server to close the connection.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        self.closed().await;
    }

    /// Drops the TCP connection without DISCONNECT.
    pub async fn drop_connection(self) {
        self.inbox.drop_connection().await;
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

/// After `sent` numbered messages were published to an offline session:
/// `got`, the numbers it was given once back, are at least one and at most
/// `bound`, in order, and the server counted the rest as dropped for a full
/// queue.
pub fn assert_offline_queue(server: &Server, got: &[u32], sent: usize, bound: usize) {
    assert!(
        (1..=bound).contains(&got.len()),
        "at most {bound} delivered: {got:?}"
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    let (_, body) = server.http_get("/metrics");
    let name = "fjord_mqtt_messages_dropped_total{reason=\"queue_full\"}";
    let dropped = metric(&body, name);
    assert_eq!(
        dropped,
        Some((sent - got.len()) as f64),
        "drops are counted"
    );
}
