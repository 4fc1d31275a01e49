//! A real broker with its gRPC service on an ephemeral port, for tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::{Broker, BrokerConfig, serve_grpc};
use fjord_proto::v1 as pb;
use fjord_proto::v1::fetch_service_client::FetchServiceClient;
use fjord_proto::v1::group_service_client::GroupServiceClient;
use fjord_proto::v1::health_service_client::HealthServiceClient;
use fjord_proto::v1::produce_service_client::ProduceServiceClient;
use fjord_proto::v1::topic_service_client::TopicServiceClient;
use fjord_storage::{BatchBuilder, Compression, Record};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct Node {
    pub broker: Broker,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    pub async fn start(dir: &Path) -> Node {
        Node::start_with(dir, |_| {}).await
    }

    pub async fn start_with(dir: &Path, tweak: impl FnOnce(&mut BrokerConfig)) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = BrokerConfig::new(dir);
        config.offsets_topic_partitions = 2;
        config.advertised_grpc = Some(addr);
        tweak(&mut config);
        let broker = Broker::open(config).await.unwrap();
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn({
            let broker = broker.clone();
            async move {
                serve_grpc(broker, listener, Default::default(), async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            }
        });
        broker.start().await.unwrap();
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        // Ready when Health answers.
        HealthServiceClient::new(channel.clone())
            .check(pb::HealthCheckRequest {})
            .await
            .unwrap();
        Node {
            broker,
            channel,
            stop: Some(tx),
            server: Some(server),
        }
    }

    pub async fn stop(mut self) {
        self.broker.shutdown().await;
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }

    pub fn topics(&self) -> TopicServiceClient<Channel> {
        TopicServiceClient::new(self.channel.clone())
    }
    pub fn produce(&self) -> ProduceServiceClient<Channel> {
        ProduceServiceClient::new(self.channel.clone())
    }
    pub fn fetch(&self) -> FetchServiceClient<Channel> {
        FetchServiceClient::new(self.channel.clone())
    }
    pub fn groups(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone())
    }

    pub async fn create(&self, name: &str, partitions: u32, configs: &[(&str, &str)]) {
        self.topics()
            .create_topic(pb::CreateTopicRequest {
                name: name.into(),
                partitions,
                replication_factor: 1,
                configs: configs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .await
            .unwrap();
    }

    pub async fn produce_batch(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
    ) -> Result<pb::ProduceResponse, tonic::Status> {
        self.produce()
            .produce(pb::ProduceRequest {
                topic: topic.into(),
                batches: vec![pb::PartitionBatch { partition, batch }],
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn fetch_values(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Vec<(i64, Bytes)> {
        let r = self
            .fetch()
            .fetch(pb::FetchRequest {
                topic: topic.into(),
                partition,
                offset,
                max_bytes: 1 << 20,
                decode: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        r.decoded
            .into_iter()
            .map(|d| (d.offset, d.value.unwrap_or_default()))
            .collect()
    }

    pub async fn log_end(&self, topic: &str, partition: u32) -> i64 {
        let d = self
            .topics()
            .describe_topic(pb::DescribeTopicRequest {
                name: topic.into(),
                local_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        d.topic.unwrap().partitions[partition as usize].log_end_offset
    }
}

pub fn batch(codec: Compression, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(codec);
    for v in values {
        b.add(Record::new(
            None,
            Some(Bytes::from(v.to_string())),
            1_700_000_000_000,
        ));
    }
    b.build().unwrap()
}

/// Re-signs a batch after the caller edited it (so only the edit is wrong).
pub fn recrc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Polls `check` until it holds or `secs` pass.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    secs: u64,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
