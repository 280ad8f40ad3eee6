//! [`Topology`]: which Redis deployment a URL names.

use crate::error::Error;

/// The most nodes or sentinels one URL may list.
pub const MAX_NODES: usize = 64;

/// A Redis deployment, parsed from a URL.
///
/// - `redis://[user:password@]host:port[/db]` (or `rediss://`, or
///   `unix://`): one server.
/// - `redis+cluster://[user:password@]host:port,host:port,...`: a Redis
///   Cluster, reached through any of the listed nodes (one is enough; list
///   several so a dead one does not stop the start). Several `redis://`
///   URLs separated by commas mean the same.
/// - `redis+sentinel://[user:password@]host:port,host:port,.../master`: the
///   primary named `master`, found through the listed Sentinels and followed
///   across failovers. The password is the data nodes' (Sentinels are asked
///   without one).
///
/// # Examples
///
/// ```
/// use seckill_redis::Topology;
///
/// let t = Topology::parse("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster")?;
/// assert!(matches!(t, Topology::Sentinel { ref master, .. } if master == "mymaster"));
/// let t = Topology::parse("redis://10.0.0.1:6379,redis://10.0.0.2:6379")?;
/// assert!(matches!(t, Topology::Cluster { ref nodes, .. } if nodes.len() == 2));
/// # Ok::<(), seckill_redis::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One server; the URL as given.
    Single {
        /// A `redis://`, `rediss://` or `unix://` URL.
        url: String,
    },
    /// A Redis Cluster.
    Cluster {
        /// `host:port` of each listed node.
        nodes: Vec<String>,
        /// `user:password` from the URL, if any.
        credentials: Option<String>,
    },
    /// A primary watched by Sentinels.
    Sentinel {
        /// `host:port` of each Sentinel.
        sentinels: Vec<String>,
        /// The name the Sentinels monitor the primary under.
        master: String,
        /// `user:password` from the URL, if any.
        credentials: Option<String>,
    },
}

impl Topology {
    /// Parses a URL (see the type's documentation).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming what is wrong: an unknown scheme, no or more
    /// than [`MAX_NODES`] nodes, a node without `host:port` or with a bad
    /// port, a Sentinel URL without a master name.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let url = url.trim();
        let bad = |why: &str| Error::Config(format!("Redis URL {url:?}: {why}"));
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (credentials, hosts) = split_credentials(rest);
            let nodes = nodes(hosts.trim_end_matches('/')).map_err(|why| bad(&why))?;
            return Ok(Topology::Cluster { nodes, credentials });
        }
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (credentials, rest) = split_credentials(rest);
            let (hosts, master) = rest
                .split_once('/')
                .ok_or_else(|| bad("a Sentinel URL ends with /<master name>"))?;
            if master.is_empty() || master.len() > 64 || master.contains(['/', ' ', ',']) {
                return Err(bad(
                    "the master name must be 1 to 64 bytes without '/', ',' or spaces",
                ));
            }
            let sentinels = nodes(hosts).map_err(|why| bad(&why))?;
            return Ok(Topology::Sentinel {
                sentinels,
                master: master.to_owned(),
                credentials,
            });
        }
        if !["redis://", "rediss://", "unix://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err(bad(
                "use redis://, rediss://, unix://, redis+cluster:// or redis+sentinel://",
            ));
        }
        if url.contains(',') {
            // Several single-node URLs: the nodes of one cluster.
            let mut credentials = None;
            let mut hosts = Vec::new();
            for part in url.split(',') {
                let rest = part
                    .trim()
                    .strip_prefix("redis://")
                    .ok_or_else(|| bad("every URL of a node list starts with redis://"))?;
                let (c, host) = split_credentials(rest);
                credentials = credentials.or(c);
                hosts.push(host.trim_end_matches('/').to_owned());
            }
            let nodes = nodes(&hosts.join(",")).map_err(|why| bad(&why))?;
            return Ok(Topology::Cluster { nodes, credentials });
        }
        Ok(Topology::Single {
            url: url.to_owned(),
        })
    }

    /// `redis://[credentials@]host:port` for each node or Sentinel.
    pub fn node_urls(&self) -> Vec<String> {
        match self {
            Topology::Single { url } => vec![url.clone()],
            Topology::Cluster { nodes, credentials } => {
                nodes.iter().map(|n| node_url(credentials, n)).collect()
            }
            Topology::Sentinel { sentinels, .. } => {
                sentinels.iter().map(|n| node_url(&None, n)).collect()
            }
        }
    }
}

fn node_url(credentials: &Option<String>, node: &str) -> String {
    match credentials {
        Some(c) => format!("redis://{c}@{node}"),
        None => format!("redis://{node}"),
    }
}

fn split_credentials(rest: &str) -> (Option<String>, &str) {
    match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials.to_owned()), hosts),
        None => (None, rest),
    }
}

fn nodes(list: &str) -> Result<Vec<String>, String> {
    let nodes: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if nodes.is_empty() || nodes.len() > MAX_NODES {
        return Err(format!(
            "list 1 to {MAX_NODES} host:port nodes, got {}",
            nodes.len()
        ));
    }
    for node in &nodes {
        let port = node
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        match port {
            Some((host, Ok(port))) if !host.is_empty() && port > 0 => {}
            _ => {
                return Err(format!(
                    "{node:?} is not host:port with a port of 1 to 65535"
                ));
            }
        }
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() {
        assert_eq!(
            Topology::parse("redis://127.0.0.1:6379/0").ok(),
            Some(Topology::Single {
                url: "redis://127.0.0.1:6379/0".into()
            })
        );
        assert_eq!(
            Topology::parse("redis+cluster://u:p@a:1,b:2/").ok(),
            Some(Topology::Cluster {
                nodes: vec!["a:1".into(), "b:2".into()],
                credentials: Some("u:p".into()),
            })
        );
        assert_eq!(
            Topology::parse("redis+sentinel://a:1,b:2/main").ok(),
            Some(Topology::Sentinel {
                sentinels: vec!["a:1".into(), "b:2".into()],
                master: "main".into(),
                credentials: None,
            })
        );
        let cluster = Topology::parse("redis://:pw@a:1, redis://b:2").ok();
        assert_eq!(
            cluster.map(|t| t.node_urls()),
            Some(vec!["redis://:pw@a:1".into(), "redis://:pw@b:2".into()])
        );
    }

    #[test]
    fn bad_urls_say_why() {
        for url in [
            "http://a:1",
            "redis+cluster://",
            "redis+cluster://a",
            "redis+cluster://a:0",
            "redis+cluster://a:99999",
            "redis+sentinel://a:1",
            "redis+sentinel://a:1/",
            "redis://a:1,http://b:2",
        ] {
            match Topology::parse(url) {
                Err(Error::Config(why)) => assert!(why.contains(url), "{why}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        let many = (1..=65)
            .map(|p| format!("h:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(Topology::parse(&format!("redis+cluster://{many}")).is_err());
    }
}
