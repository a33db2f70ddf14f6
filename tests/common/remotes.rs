//! Real remote brokers for the bridge tests, on loopback, each in its own
//! temporary directory: Debian's `mosquitto` and a three-node `nats-server`
//! JetStream cluster with MQTT on every node. Each is killed and reaped on
//! drop. Readiness is waited for (a port that accepts, an MQTT CONNACK),
//! never slept for. The NATS nodes serve their monitoring endpoint, so that a
//! test can ask the cluster what it holds and has delivered ([`MqttStream`]).

use std::fs;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::MqttOptions;
use serde_json::Value;
use tempfile::TempDir;

use super::{free_port, Mqtt};

/// How long a remote may take to come up.
const STARTUP: Duration = Duration::from_secs(30);

/// Finds `program` on PATH or in /usr/sbin (where Debian puts both
/// servers, which is not on every user's PATH). Missing: under CI (env
/// `CI` set) panics, else prints a skip line and returns None.
pub(crate) fn require_server(program: &str, package: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/sbin"));
    let found = dirs
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{program} not found; .ci/run installs {package}");
        }
        eprintln!("skipping: {program} not found (apt-get install {package})");
    }
    found
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Sends SIGTERM to a child and waits for it to exit.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// What a Mosquitto instance is set up with.
#[derive(Default, Clone)]
pub(crate) struct MosquittoSetup {
    /// A TLS listener (besides the plain one) with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Only this user (name, password) may connect; anonymous otherwise.
    pub user: Option<(String, String)>,
}

/// A running `mosquitto` with persistence in its own directory.
pub(crate) struct Mosquitto {
    pub dir: TempDir,
    bin: PathBuf,
    child: Option<Child>,
    /// The plain MQTT listener.
    pub port: u16,
    /// The TLS listener, when set up.
    pub tls_port: Option<u16>,
    pub log: PathBuf,
}

impl Mosquitto {
    /// Starts one, or None (with a skip line) when it is not installed.
    pub(crate) fn start(setup: MosquittoSetup) -> Option<Mosquitto> {
        let bin = require_server("mosquitto", "mosquitto")?;
        let dir = tempfile::Builder::new()
            .prefix("brook-mosquitto-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let tls_port = setup.tls.as_ref().map(|_| free_port());
        let mut conf = format!(
            "per_listener_settings false\n\
             user root\n\
             persistence true\n\
             persistence_location {dir}/\n\
             autosave_interval 1\n\
             max_queued_messages 0\n\
             max_inflight_messages 100\n\
             log_dest file {dir}/mosquitto.log\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             connection_messages true\n\
             listener {port} 127.0.0.1\n",
            dir = dir.path().display()
        );
        if let (Some((cert, key)), Some(tls_port)) = (&setup.tls, tls_port) {
            conf.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                cert.display(),
                key.display()
            ));
        }
        match &setup.user {
            None => conf.push_str("allow_anonymous true\n"),
            Some((user, password)) => {
                let file = dir.path().join("passwords");
                let passwd = require_server("mosquitto_passwd", "mosquitto")
                    .expect("mosquitto_passwd comes with mosquitto");
                let ok = Command::new(passwd)
                    .arg("-c")
                    .arg("-b")
                    .arg(&file)
                    .arg(user)
                    .arg(password)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("run mosquitto_passwd");
                assert!(ok.success(), "mosquitto_passwd failed");
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
        }
        fs::write(dir.path().join("mosquitto.conf"), conf).expect("write mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        let mut m = Mosquitto {
            dir,
            bin,
            child: None,
            port,
            tls_port,
            log,
        };
        m.boot();
        Some(m)
    }

    fn boot(&mut self) {
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        let mut ports = vec![self.port];
        ports.extend(self.tls_port);
        while !ports.iter().all(|p| accepts(*p)) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "mosquitto exited with {status}; its log:\n{}",
                    self.log_text()
                );
            }
            assert!(Instant::now() < deadline, "mosquitto did not come up");
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops it gracefully (SIGTERM: it saves its persistence file).
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }

    /// Starts it again on the same ports and persistence.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() after stop()");
        self.boot();
    }

    /// Options for a test client of this broker (no credentials).
    pub(crate) fn options(&self, client_id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", self.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(40);
            eprintln!(
                "---- last lines of mosquitto's log ----\n{}",
                lines[from..].join("\n")
            );
        }
    }
}

/// One node of a [`NatsCluster`].
struct NatsNode {
    name: String,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    mqtt_port: u16,
    /// The monitoring endpoint (`/jsz`).
    http_port: u16,
}

/// Three `nats-server`s forming a JetStream cluster, MQTT on each (MQTT
/// 3.1.1; its streams and consumers replicated on all three).
pub(crate) struct NatsCluster {
    pub dir: TempDir,
    bin: PathBuf,
    nodes: Vec<NatsNode>,
}

impl NatsCluster {
    /// Starts the cluster and waits until every node answers MQTT; None
    /// (with a skip line) when nats-server is not installed.
    pub(crate) fn start() -> Option<NatsCluster> {
        let bin = require_server("nats-server", "nats-server")?;
        let dir = tempfile::Builder::new()
            .prefix("brook-nats-")
            .tempdir()
            .expect("temp dir");
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mqtt_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let http_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(format!("js-{name}"));
            let conf = dir.path().join(format!("{name}.conf"));
            fs::write(
                &conf,
                format!(
                    "server_name: {name}\n\
                     listen: 127.0.0.1:{}\n\
                     http: 127.0.0.1:{}\n\
                     jetstream {{ store_dir: {:?} }}\n\
                     cluster {{ name: brook-test, listen: 127.0.0.1:{}, routes: [{routes}] }}\n\
                     mqtt {{ listen: 127.0.0.1:{}, stream_replicas: 3, consumer_replicas: 3 }}\n",
                    client_ports[i],
                    http_ports[i],
                    store.display().to_string(),
                    route_ports[i],
                    mqtt_ports[i]
                ),
            )
            .expect("write node config");
            nodes.push(NatsNode {
                log: dir.path().join(format!("{name}.log")),
                name,
                conf,
                child: None,
                mqtt_port: mqtt_ports[i],
                http_port: http_ports[i],
            });
        }
        let mut cluster = NatsCluster { dir, bin, nodes };
        for i in 0..3 {
            cluster.spawn(i);
        }
        for i in 0..3 {
            cluster.wait_mqtt(i);
        }
        Some(cluster)
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("open node log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        node.child = Some(child);
    }

    /// Waits until node `i` completes an MQTT CONNECT (JetStream has a
    /// leader and the MQTT streams exist).
    fn wait_mqtt(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let node = &mut self.nodes[i];
            if let Some(Ok(Some(status))) = node.child.as_mut().map(|c| c.try_wait()) {
                panic!("nats-server {} exited with {status}", node.name);
            }
            if accepts(node.mqtt_port) {
                let mut o = MqttOptions::new(format!("probe-{i}"), "127.0.0.1", node.mqtt_port);
                o.set_keep_alive(Duration::from_secs(10));
                let (m, ack) = Mqtt::try_connect(o, 10);
                if ack.is_ok() {
                    m.disconnect();
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not answer MQTT in time",
                self.nodes[i].name
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Node `i`'s MQTT address as a bridge url.
    pub(crate) fn url(&self, i: usize) -> String {
        format!("mqtt://127.0.0.1:{}", self.nodes[i].mqtt_port)
    }

    pub(crate) fn mqtt_port(&self, i: usize) -> u16 {
        self.nodes[i].mqtt_port
    }

    /// `kill -9` of node `i`.
    pub(crate) fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What the nodes still running say about the stream that holds MQTT
    /// QoS 1 messages (`$MQTT_msgs`) and its consumers (one or two per
    /// subscription of each MQTT session), each as its leader sees it.
    pub(crate) fn mqtt_stream(&self) -> MqttStream {
        let mut view = MqttStream::default();
        let mut leaderless: Vec<(String, String)> = Vec::new();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let Some(stream) = jsz_stream(node.http_port, "$MQTT_msgs") else {
                continue;
            };
            let leads = |v: &Value| v["cluster"]["leader"].as_str() == Some(node.name.as_str());
            let last_seq = stream["state"]["last_seq"].as_u64().unwrap_or(0);
            if leads(&stream) {
                view.leader = Some(node.name.clone());
                view.last_seq = last_seq;
            }
            for c in stream["consumer_detail"].as_array().into_iter().flatten() {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                let filter = c["config"]["filter_subject"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if leads(c) {
                    let n = |v: &Value| v.as_u64().unwrap_or(0);
                    view.consumers.push(MqttConsumer {
                        name,
                        filter,
                        leader: Some(node.name.clone()),
                        leader_last_seq: last_seq,
                        pending: n(&c["num_pending"]),
                        ack_pending: n(&c["num_ack_pending"]),
                        delivered: n(&c["delivered"]["consumer_seq"]),
                    });
                } else {
                    leaderless.push((name, filter));
                }
            }
        }
        for (name, filter) in leaderless {
            if !view.consumers.iter().any(|c| c.name == name) {
                view.consumers.push(MqttConsumer {
                    name,
                    filter,
                    leader: None,
                    leader_last_seq: 0,
                    pending: 0,
                    ack_pending: 0,
                    delivered: 0,
                });
            }
        }
        view
    }

    pub(crate) fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let text = fs::read_to_string(&n.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(20);
                format!("---- {} ----\n{}", n.name, lines[from..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The `stream_detail` entry of `stream` in a node's `/jsz`, with its
/// consumers and their configs; None when the node does not answer.
fn jsz_stream(http_port: u16, stream: &str) -> Option<Value> {
    let url = format!("http://127.0.0.1:{http_port}/jsz?streams=true&consumers=true&config=true");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let body = agent
        .get(&url)
        .call()
        .ok()?
        .into_body()
        .read_to_string()
        .ok()?;
    let jsz: Value = serde_json::from_str(&body).ok()?;
    jsz["account_details"]
        .as_array()?
        .iter()
        .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
        .find(|s| s["name"] == stream)
        .cloned()
}

/// The MQTT messages stream of a [`NatsCluster`] (`NatsCluster::mqtt_stream`).
#[derive(Debug, Default, Clone)]
pub(crate) struct MqttStream {
    /// The node leading the stream, and the last sequence it holds (every
    /// QoS 1 message NATS stored, removed ones included).
    pub leader: Option<String>,
    pub last_seq: u64,
    pub consumers: Vec<MqttConsumer>,
}

impl MqttStream {
    /// The consumers whose filter subject is one of `filters`.
    pub(crate) fn consumers_of<'a>(
        &'a self,
        filters: &'a [&str],
    ) -> impl Iterator<Item = &'a MqttConsumer> + 'a {
        self.consumers
            .iter()
            .filter(move |c| filters.contains(&c.filter.as_str()))
    }

    /// Whether the consumers with these filters exist, have a leader whose
    /// copy of the stream is as long as the stream leader's, and have
    /// nothing left to deliver and nothing delivered but unacknowledged:
    /// the cluster has delivered all it is going to deliver to them.
    pub(crate) fn delivered_all(&self, filters: &[&str]) -> bool {
        self.leader.is_some()
            && self.consumers_of(filters).count() > 0
            && self.consumers_of(filters).all(|c| {
                c.leader.is_some()
                    && c.leader_last_seq == self.last_seq
                    && c.pending == 0
                    && c.ack_pending == 0
            })
    }
}

/// One JetStream consumer of `$MQTT_msgs`, as its leader sees it (zero
/// counts while it has none).
#[derive(Debug, Clone)]
pub(crate) struct MqttConsumer {
    pub name: String,
    /// `$MQTT.msgs.` and the subscription's filter in NATS syntax.
    pub filter: String,
    pub leader: Option<String>,
    /// The last sequence of the leader's own copy of the stream.
    pub leader_last_seq: u64,
    /// Messages not yet delivered, and delivered but not acknowledged.
    pub pending: u64,
    pub ack_pending: u64,
    /// Deliveries so far, redeliveries included.
    pub delivered: u64,
}

/// The certificate directory for a TLS remote: (dir, cert, key, DER).
pub(crate) fn tls_files() -> (TempDir, PathBuf, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key, der) = super::self_signed_cert(dir.path());
    (dir, cert, key, der)
}
