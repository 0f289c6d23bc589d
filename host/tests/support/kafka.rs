//! Kafka for tests: in-process (librdkafka's mock cluster: real protocol, real
//! clients) or, where the mock cannot show a behaviour (transactions: it neither stores
//! transactional offset commits nor hides aborted records), Apache Kafka named by the
//! environment; and pipelines to run against either.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kafka_transit::config::PipelineConfig;
use kafka_transit::metrics::{Metrics, Snapshot};
use kafka_transit::pipeline::{Pipeline, PipelineError};
use kafka_transit::policy::swap::{PolicySwitch, Triggers};
use kafka_transit::policy::{PolicyRunner, PolicyRuntime};
use kafka_transit::vault::VaultClient;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Prefix of the variables naming Apache Kafka clusters: `KAFKA_TRANSIT_TEST_KAFKA_<ROLE>`
/// holds a bootstrap address (`.ci/run` starts them with `.ci/kafka/kafka.sh`).
pub const EXTERNAL_KAFKA_ENV: &str = "KAFKA_TRANSIT_TEST_KAFKA";

/// A mock cluster of three brokers (each partition keeps only 5 MiB: size data to fit),
/// or an external Apache Kafka cluster.
pub struct TestKafka {
    cluster: Option<MockCluster<'static, DefaultProducerContext>>,
    pub bootstrap: String,
}

impl Drop for TestKafka {
    fn drop(&mut self) {
        // A failed assertion unwinds past the pipelines before they have stopped: a
        // cluster destroyed under them would leave their last offset commit waiting
        // forever (librdkafka's synchronous commit has no timeout), and the failing test
        // would hang instead of failing. The process ends soon; let the cluster live.
        if std::thread::panicking() {
            std::mem::forget(self.cluster.take());
        }
    }
}

impl TestKafka {
    pub fn start(topics: &[(&str, i32)]) -> TestKafka {
        let cluster = MockCluster::new(3).expect("mock cluster");
        for (topic, partitions) in topics {
            cluster
                .create_topic(topic, *partitions, 1)
                .expect("create topic");
        }
        let bootstrap = cluster.bootstrap_servers();
        TestKafka {
            cluster: Some(cluster),
            bootstrap,
        }
    }

    /// The Apache Kafka cluster named by `KAFKA_TRANSIT_TEST_KAFKA_<role>`; panics with
    /// how to start one when the variable is unset (tests that need it are `#[ignore]`d,
    /// so only an explicit `--ignored` run gets here).
    pub fn external(role: &str) -> TestKafka {
        let variable = format!("{EXTERNAL_KAFKA_ENV}_{role}");
        let bootstrap = std::env::var(&variable).unwrap_or_else(|_| {
            panic!(
                "{variable} is not set: start Apache Kafka with `bash .ci/kafka/kafka.sh start DIR` \
                 and set {variable}=$(cat DIR/bootstrap)"
            )
        });
        TestKafka::at(&bootstrap)
    }

    /// An external cluster at `bootstrap`.
    pub fn at(bootstrap: &str) -> TestKafka {
        TestKafka {
            cluster: None,
            bootstrap: bootstrap.to_string(),
        }
    }

    /// Whether this is librdkafka's mock cluster.
    pub fn is_mock(&self) -> bool {
        self.cluster.is_some()
    }

    /// Creates topics with `config` (topic-level settings; an external cluster only: the
    /// mock cluster answers no CreateTopics request and takes no settings).
    pub async fn create_topics(&self, topics: &[(&str, i32)], config: &[(&str, &str)]) {
        // The admin API refuses an empty request.
        if topics.is_empty() {
            return;
        }
        if let Some(cluster) = &self.cluster {
            assert!(
                config.is_empty(),
                "the mock cluster takes no topic settings"
            );
            for (topic, partitions) in topics {
                cluster
                    .create_topic(topic, *partitions, 1)
                    .expect("create topic");
            }
            return;
        }
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|(name, partitions)| {
                config.iter().fold(
                    NewTopic::new(name, *partitions, TopicReplication::Fixed(1)),
                    |topic, (key, value)| topic.set(key, value),
                )
            })
            .collect();
        for result in admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .expect("create topics")
        {
            result.unwrap_or_else(|(topic, error)| panic!("creating {topic}: {error}"));
        }
    }

    /// Deletes topics on an external cluster (their data goes with them).
    pub async fn delete_topics(&self, topics: &[&str]) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        for result in admin
            .delete_topics(topics, &AdminOptions::new())
            .await
            .expect("delete topics")
        {
            result.unwrap_or_else(|(topic, error)| panic!("deleting {topic}: {error}"));
        }
    }

    fn mock(&self) -> &MockCluster<'static, DefaultProducerContext> {
        self.cluster
            .as_ref()
            .expect("fault injection needs the mock cluster")
    }

    /// Delays every broker's responses (acknowledgements included) by `delay`.
    pub fn slow_brokers(&self, delay: Duration) {
        for broker in 1..=3 {
            self.mock()
                .broker_round_trip_time(broker, delay)
                .expect("broker round-trip time");
        }
    }

    /// Takes every broker down (`up = false`) or brings them back: a cluster that
    /// accepts no connections, as when the sink cluster is down.
    pub fn brokers(&self, up: bool) {
        for broker in 1..=3 {
            if up {
                self.mock().broker_up(broker).expect("broker up");
            } else {
                self.mock().broker_down(broker).expect("broker down");
            }
        }
    }

    /// The next offsets committed under `group` for partitions `0..partitions` of
    /// `topic` (-1 where there is none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let list = self
            .group_client(group)
            .committed_offsets(partition_list(topic, partitions, None), WAIT)
            .expect("committed offsets");
        list.elements()
            .iter()
            .map(|e| e.offset().to_raw().filter(|&o| o >= 0).unwrap_or(-1))
            .collect()
    }

    /// Commits `offset` under `group` for every partition `0..partitions` of `topic`,
    /// as an operator resetting a group's offsets would.
    pub fn commit(&self, group: &str, topic: &str, partitions: i32, offset: i64) {
        self.group_client(group)
            .commit(
                &partition_list(topic, partitions, Some(offset)),
                CommitMode::Sync,
            )
            .expect("commit");
    }

    fn group_client(&self, group: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    }

    /// Produces records (key, value, headers) and waits for every acknowledgement.
    pub async fn produce(&self, topic: &str, records: &[TestRecord]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("message.max.bytes", "67108864")
            .create()
            .expect("producer");
        let mut deliveries = Vec::new();
        for record in records {
            let headers = record
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: v.as_deref(),
                    })
                });
            let mut message = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
            if let Some(key) = &record.key {
                message = message.key(key);
            }
            if let Some(value) = &record.value {
                message = message.payload(value);
            }
            if let Some(timestamp) = record.timestamp {
                message = message.timestamp(timestamp);
            }
            deliveries.push(
                producer
                    .send_result(message)
                    .map_err(|(e, _)| e)
                    .expect("enqueue"),
            );
        }
        for delivery in deliveries {
            delivery.await.expect("delivery").expect("acknowledged");
        }
    }

    /// Produces one record whose header names are raw bytes, as any producer may send
    /// them (`kcat -H $'\xff=x'`): rdkafka's own API only takes `&str` names, so this
    /// goes through librdkafka's `rd_kafka_produceva`.
    pub fn produce_raw_headers(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
        headers: &[(&[u8], &[u8])],
    ) {
        use rdkafka::bindings as rd;
        use rdkafka::producer::{BaseProducer, Producer};
        use std::ffi::CString;
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("producer");
        let topic = CString::new(topic).expect("topic");
        let names: Vec<CString> = headers
            .iter()
            .map(|(name, _)| CString::new(*name).expect("no NUL in a header name"))
            .collect();
        let mut values = vec![
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    cstr: topic.as_ptr(),
                },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                        ptr: key.as_ptr() as *mut _,
                        size: key.len(),
                    },
                },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                        ptr: value.as_ptr() as *mut _,
                        size: value.len(),
                    },
                },
            },
        ];
        for (name, (_, header_value)) in names.iter().zip(headers) {
            values.push(rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                        name: name.as_ptr(),
                        val: header_value.as_ptr().cast(),
                        size: header_value.len() as isize,
                    },
                },
            });
        }
        // SAFETY: every pointer in `values` points into data alive for the call, which
        // librdkafka copies (RD_KAFKA_MSG_F_COPY is its default for produceva).
        let error = unsafe {
            let error = rd::rd_kafka_produceva(
                producer.client().native_ptr(),
                values.as_ptr(),
                values.len(),
            );
            let code = rd::rd_kafka_error_code(error);
            if !error.is_null() {
                rd::rd_kafka_error_destroy(error);
            }
            code
        };
        assert_eq!(
            error,
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
            "produceva"
        );
        producer
            .flush(Duration::from_secs(30))
            .expect("the raw record is acknowledged");
    }

    /// Everything on a topic (up to `expected` records, waiting at most `timeout`).
    pub async fn read(&self, topic: &str, expected: usize, timeout: Duration) -> Vec<OwnedMessage> {
        let bootstrap = self.bootstrap.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            kafka_transit::kafka::read_topic(&bootstrap, &topic, expected, timeout)
                .expect("read topic")
        })
        .await
        .unwrap()
    }
}

const WAIT: Duration = Duration::from_secs(30);

fn partition_list(topic: &str, partitions: i32, offset: Option<i64>) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        match offset {
            Some(offset) => list
                .add_partition_offset(topic, partition, Offset::Offset(offset))
                .expect("offset"),
            None => {
                list.add_partition(topic, partition);
            }
        }
    }
    list
}

#[derive(Debug, Clone, Default)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the epoch; the producer's clock when `None`.
    pub timestamp: Option<i64>,
}

impl TestRecord {
    pub fn new(key: &str, value: &str) -> TestRecord {
        TestRecord {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
            timestamp: None,
        }
    }
}

/// A component built from guest/ by the host's build script.
pub fn guest_component(name: &str) -> PathBuf {
    PathBuf::from(env!("OUT_DIR")).join(format!("{}.wasm", name.replace('-', "_")))
}

/// The value of a consumed record's header `name`, if it has one with a value.
pub fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a [u8]> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// [`header`] as text; panics when the header is missing.
pub fn header_text(message: &OwnedMessage, name: &str) -> String {
    String::from_utf8_lossy(header(message, name).unwrap_or_else(|| panic!("no header {name}")))
        .into_owned()
}

/// The parts of a pipeline file tests vary.
pub struct PipelineSpec<'a> {
    pub source_bootstrap: &'a str,
    pub sink_bootstrap: &'a str,
    pub source_topic: &'a str,
    pub sink_topic: &'a str,
    pub group: &'a str,
    /// `builtin = "..."` or `path = "..."`.
    pub policy: String,
    /// Lines of `[policy.config]`.
    pub policy_config: &'a str,
    /// Lines of `[errors]`.
    pub errors: &'a str,
    pub vault_address: &'a str,
    /// The `[schema_registry]` url, for the policies of schema'd records.
    pub schema_registry: Option<&'a str>,
}

impl<'a> PipelineSpec<'a> {
    /// Topic `in` to topic `out` on one cluster, dead letters to `dlq`, transit key
    /// `customers`: what most single-pipeline tests run.
    pub fn in_to_out(
        kafka: &'a TestKafka,
        vault_address: &'a str,
        group: &'a str,
        policy: String,
    ) -> PipelineSpec<'a> {
        PipelineSpec {
            source_bootstrap: &kafka.bootstrap,
            sink_bootstrap: &kafka.bootstrap,
            source_topic: "in",
            sink_topic: "out",
            group,
            policy,
            policy_config: "key = \"customers\"",
            errors: "on_failure = \"dead-letter\"\ndead_letter_topic = \"dlq\"",
            vault_address,
            schema_registry: None,
        }
    }

    /// Topic `from` to topic `to` on one cluster, consumer group `from`, dead letters to
    /// `dlq`, transit key `customers`: a step of a chain of pipelines.
    pub fn from_to(
        kafka: &'a TestKafka,
        vault_address: &'a str,
        from: &'a str,
        to: &'a str,
        policy: String,
    ) -> PipelineSpec<'a> {
        PipelineSpec {
            source_topic: from,
            sink_topic: to,
            ..PipelineSpec::in_to_out(kafka, vault_address, from, policy)
        }
    }

    pub fn config(&self) -> PipelineConfig {
        let text = self.text();
        PipelineConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Writes the pipeline file to `path` (for what re-reads it: a policy reload).
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.text())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// The pipeline file's text.
    pub fn text(&self) -> String {
        let registry = self
            .schema_registry
            .map(|url| format!("[schema_registry]\nurl = \"{url}\"\n"))
            .unwrap_or_default();
        format!(
            r#"
[source]
bootstrap_servers = "{}"
topics = ["{}"]
group_id = "{}"

[sink]
bootstrap_servers = "{}"
topic = "{}"

[vault]
address = "{}"
token_env = "KAFKA_TRANSIT_TEST_UNUSED"

[policy]
{}
[policy.config]
{}

[errors]
{}

[pipeline]
batch_size = 200
progress_interval = "1s"

{}"#,
            self.source_bootstrap,
            self.source_topic,
            self.group,
            self.sink_bootstrap,
            self.sink_topic,
            self.vault_address,
            self.policy,
            self.policy_config,
            self.errors,
            registry
        )
    }
}

async fn start_policy(config: &PipelineConfig, vault: &VaultClient) -> PolicyRunner {
    let runtime = PolicyRuntime::from_config(&config.policy, Some(vault.clone()))
        .expect("policy loads")
        .with_pipeline(
            kafka_transit::policy::pipeline::PipelineView::of(config).expect("sink route"),
        );
    PolicyRunner::start(Arc::new(runtime))
        .await
        .expect("policy starts")
}

/// A pipeline running in the background.
/// How long [`RunningPipeline::stop`] waits for the pipeline to end.
const STOP_LIMIT: Duration = Duration::from_secs(120);

pub struct RunningPipeline {
    pub metrics: Arc<Metrics>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<Snapshot, PipelineError>>,
    /// The error the pipeline stopped with, if it stopped by itself: a stalled wait
    /// says it.
    failed: Arc<std::sync::Mutex<Option<String>>>,
}

impl RunningPipeline {
    pub async fn start(config: PipelineConfig, vault: VaultClient) -> RunningPipeline {
        let runner = start_policy(&config, &vault).await;
        let pipeline = Pipeline::new(config, runner, vault).expect("pipeline");
        RunningPipeline::run(pipeline)
    }

    /// A pipeline from the file at `config_path` whose policy can be swapped while it
    /// runs, as `kafka-transit run` does: through the returned switch, and by the file
    /// watcher and SIGHUP listener, which run until the returned `Triggers` drops.
    pub async fn start_swappable(
        config_path: &Path,
        vault: VaultClient,
    ) -> (RunningPipeline, PolicySwitch, Triggers) {
        let config = PipelineConfig::load(config_path).expect("pipeline file loads");
        let runner = start_policy(&config, &vault).await;
        let (switch, updates) = PolicySwitch::new(
            config_path.to_path_buf(),
            config.policy.clone(),
            vault.clone(),
            runner.runtime(),
        );
        let triggers = switch.spawn_triggers();
        let pipeline = Pipeline::new(config, runner, vault)
            .expect("pipeline")
            .with_policy_updates(updates);
        (RunningPipeline::run(pipeline), switch, triggers)
    }

    fn run(pipeline: Pipeline) -> RunningPipeline {
        let metrics = pipeline.metrics();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let failed = Arc::new(std::sync::Mutex::new(None));
        let task = tokio::spawn({
            let failed = failed.clone();
            async move {
                let result = pipeline
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(error) = &result {
                    *failed.lock().unwrap() = Some(error.to_string());
                }
                result
            }
        });
        RunningPipeline {
            metrics,
            stop,
            task,
            failed,
        }
    }

    /// Waits until `done` holds for the counters (panics after `timeout`).
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Snapshot {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.metrics.snapshot();
            if done(&now) {
                return now;
            }
            if let Some(error) = self.failed.lock().unwrap().as_ref() {
                panic!("the pipeline stopped with an error at {now:?}: {error}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pipeline stalled at {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the pipeline as SIGTERM would and returns how it ended. A pipeline that
    /// has not ended [`STOP_LIMIT`] after the request fails the test (a stop is bounded
    /// by `pipeline.shutdown_timeout` and the commit and revocation limits, well within
    /// it), naming its counters rather than hanging the test run.
    pub async fn stop(self) -> Result<Snapshot, PipelineError> {
        let _ = self.stop.send(());
        match tokio::time::timeout(STOP_LIMIT, self.task).await {
            Ok(ended) => ended.expect("pipeline task"),
            Err(_elapsed) => panic!(
                "the pipeline did not end within {STOP_LIMIT:?} of the stop request \
                 (counters: {:?})",
                self.metrics.snapshot()
            ),
        }
    }

    /// Waits for the pipeline to end by itself (an error that stops it).
    pub async fn finished(self, timeout: Duration) -> Result<Snapshot, PipelineError> {
        tokio::time::timeout(timeout, self.task)
            .await
            .expect("pipeline did not stop by itself")
            .expect("pipeline task")
    }
}
