//! Kafka clients: the brokers given, or librdkafka's in-process mock cluster.
//!
//! Both paths hand out the same producer and consumer configuration; only
//! the bootstrap address differs.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

/// Where the app's Kafka is. Keep it alive as long as its clients: dropping
/// it stops the mock cluster, when there is one.
#[derive(Debug)]
pub struct Kafka {
    brokers: String,
    /// Dropping this ends the thread that owns the mock cluster.
    mock: Option<mpsc::Sender<MockRequest>>,
}

/// Work for the thread that owns the mock cluster (librdkafka's mock handle
/// is not `Send`, so it stays on one thread).
enum MockRequest {
    CreateTopic {
        name: String,
        partitions: i32,
        done: mpsc::Sender<Result<(), KafkaError>>,
    },
}

impl Kafka {
    /// Uses `brokers`, or starts a mock cluster when `None`.
    ///
    /// # Errors
    ///
    /// The mock cluster could not start.
    pub fn connect(brokers: Option<&str>) -> Result<Self, KafkaError> {
        match brokers {
            Some(brokers) => Ok(Self {
                brokers: brokers.to_owned(),
                mock: None,
            }),
            None => Self::mock(),
        }
    }

    fn mock() -> Result<Self, KafkaError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (requests_tx, requests_rx) = mpsc::channel::<MockRequest>();
        thread::Builder::new()
            .name("kafka-mock-cluster".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serve requests until every sender is dropped, then drop the cluster.
                for request in requests_rx {
                    match request {
                        MockRequest::CreateTopic {
                            name,
                            partitions,
                            done,
                        } => {
                            let _ = done.send(cluster.create_topic(&name, partitions, 1));
                        }
                    }
                }
            })
            .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))?;
        let brokers = ready_rx
            .recv()
            .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))??;
        Ok(Self {
            brokers,
            mock: Some(requests_tx),
        })
    }

    /// Whether this is the in-process mock cluster.
    pub fn is_mock(&self) -> bool {
        self.mock.is_some()
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Creates `topic` with `partitions` partitions unless it exists.
    ///
    /// # Errors
    ///
    /// The broker refused or did not answer.
    pub async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        if let Some(mock) = &self.mock {
            let (done_tx, done_rx) = mpsc::channel();
            let request = MockRequest::CreateTopic {
                name: topic.to_owned(),
                partitions,
                done: done_tx,
            };
            mock.send(request)
                .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))?;
            return tokio::task::spawn_blocking(move || done_rx.recv())
                .await
                .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))?
                .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))?;
        }
        let admin: AdminClient<DefaultClientContext> = self.config().create()?;
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics([&new_topic], &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(KafkaError::AdminOp(code)),
            }
        }
        Ok(())
    }

    /// Settings every client shares.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            // Loopback brokers advertise IPv4; don't let "localhost" resolve to ::1.
            .set("broker.address.family", "v4");
        config
    }

    /// An idempotent producer: retries never duplicate or reorder a message.
    ///
    /// # Errors
    ///
    /// librdkafka refused the configuration.
    pub fn producer(&self) -> Result<FutureProducer, KafkaError> {
        self.config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "10000")
            .create()
    }

    /// A consumer in `group` that commits offsets itself, after MySQL commits.
    ///
    /// # Errors
    ///
    /// librdkafka refused the configuration.
    pub fn consumer(&self, group: &str) -> Result<StreamConsumer, KafkaError> {
        self.config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()
    }
}
