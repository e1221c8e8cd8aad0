//! Ports published in host mode: a task's port answers on the node that runs it, and only
//! there. The node sends its port to the task's address on `ingress` (every task that
//! publishes is on it, and the node's leg reaches it): by a DNAT in the mesh's nftables
//! table in the kernel data path, by a userspace proxy otherwise.
//!
//! In both paths the node also binds the port itself while the task runs, so that another
//! program (or another task) cannot take it unnoticed and a port asked as 0 gets a number:
//! in the kernel path that socket only holds the port, since the DNAT takes the traffic
//! before it could reach it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use proto::{PortConfig, PortProtocol, PublishMode, Task};
use tokio::task::JoinHandle;

use super::mesh::{HostForward, Protocol};
use super::overlay::NetError;
use super::proxy::{self, Backends};

/// What holds a published port on the node.
enum Holder {
    /// The kernel path: the port is held, the DNAT carries the traffic.
    Tcp(#[allow(dead_code)] std::net::TcpListener),
    Udp(#[allow(dead_code)] std::net::UdpSocket),
    /// The userspace path: the proxy serving the port.
    Proxy(JoinHandle<()>),
}

/// One port a task publishes on this node; released when dropped.
pub struct HostPort {
    /// The port as bound (the published number the node took), for the task's status.
    pub config: PortConfig,
    /// Where the node's port goes.
    pub forward: HostForward,
    holder: Holder,
}

impl Drop for HostPort {
    fn drop(&mut self) {
        if let Holder::Proxy(serving) = &self.holder {
            serving.abort();
        }
    }
}

/// The ports `task` publishes in host mode.
pub fn wanted(task: &Task) -> Vec<&PortConfig> {
    task.endpoint
        .iter()
        .flat_map(|e| &e.ports)
        .filter(|p| p.publish_mode == PublishMode::Host as i32)
        .collect()
}

/// Binds `task`'s host-mode ports on this node and sends them to the task at `target` (its
/// ingress address): through `proxy_on`'s userspace proxies when given, else for the DNAT
/// the caller programs from each [`HostPort::forward`]. All or nothing.
pub fn publish(
    task: &Task,
    target: Ipv4Addr,
    proxy_on: Option<&tokio::runtime::Handle>,
) -> Result<Vec<HostPort>, NetError> {
    let mut out = Vec::new();
    for wanted in wanted(task) {
        let protocol = if wanted.protocol == PortProtocol::Udp as i32 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let (name, asked) = (protocol_name(protocol), wanted.published_port as u16);
        let in_use = |source: std::io::Error| NetError::Port {
            port: asked,
            protocol: name,
            source,
        };
        let at = SocketAddr::from(([0, 0, 0, 0], asked));
        let to = SocketAddrV4::new(target, wanted.target_port as u16);
        let (port, holder) = match protocol {
            Protocol::Tcp => {
                let listener = std::net::TcpListener::bind(at).map_err(in_use)?;
                let port = listener.local_addr().map_err(in_use)?.port();
                let holder = match proxy_on {
                    None => Holder::Tcp(listener),
                    Some(runtime) => {
                        let _entered = runtime.enter();
                        listener.set_nonblocking(true).map_err(in_use)?;
                        let listener =
                            tokio::net::TcpListener::from_std(listener).map_err(in_use)?;
                        let backends = Backends::new(vec![to.into()]);
                        Holder::Proxy(runtime.spawn(proxy::serve_tcp(listener, backends)))
                    }
                };
                (port, holder)
            }
            Protocol::Udp => {
                let socket = std::net::UdpSocket::bind(at).map_err(in_use)?;
                let port = socket.local_addr().map_err(in_use)?.port();
                let holder = match proxy_on {
                    None => Holder::Udp(socket),
                    Some(runtime) => {
                        let _entered = runtime.enter();
                        socket.set_nonblocking(true).map_err(in_use)?;
                        let socket = tokio::net::UdpSocket::from_std(socket).map_err(in_use)?;
                        let backends = Backends::new(vec![to.into()]);
                        Holder::Proxy(runtime.spawn(proxy::serve_udp(socket, backends)))
                    }
                };
                (port, holder)
            }
        };
        out.push(HostPort {
            config: PortConfig {
                published_port: u32::from(port),
                ..wanted.clone()
            },
            forward: HostForward {
                protocol,
                port,
                target: to,
            },
            holder,
        });
    }
    Ok(out)
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

#[cfg(test)]
mod tests {
    use proto::Endpoint;

    use super::*;

    fn task(ports: Vec<PortConfig>) -> Task {
        Task {
            endpoint: Some(Endpoint {
                ports,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(published: u32, mode: PublishMode) -> PortConfig {
        PortConfig {
            published_port: published,
            target_port: 80,
            publish_mode: mode as i32,
            ..Default::default()
        }
    }

    #[test]
    fn host_ports_are_held_while_published_and_port_zero_gets_a_number() {
        let t = task(vec![
            port(0, PublishMode::Host),
            port(8080, PublishMode::Ingress),
        ]);
        assert_eq!(wanted(&t).len(), 1, "ingress ports are the mesh's");
        let target = Ipv4Addr::new(10, 0, 0, 7);
        let held = publish(&t, target, None).unwrap();
        assert_eq!(held.len(), 1);
        let number = held[0].forward.port;
        assert_ne!(number, 0);
        assert_eq!(held[0].config.published_port, u32::from(number));
        assert_eq!(held[0].forward.target, SocketAddrV4::new(target, 80));
        // The port is taken while the task publishes it...
        let again = task(vec![port(u32::from(number), PublishMode::Host)]);
        let err = publish(&again, target, None).err().expect("in use");
        assert!(
            err.to_string().contains(&format!("port {number}/tcp")),
            "{err}"
        );
        // ...and free once it no longer does.
        drop(held);
        assert_eq!(publish(&again, target, None).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn in_userspace_a_host_port_is_proxied_to_its_task() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let task_side = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_port = task_side.local_addr().unwrap().port();
        let t = task(vec![PortConfig {
            target_port: u32::from(target_port),
            ..port(0, PublishMode::Host)
        }]);
        let runtime = tokio::runtime::Handle::current();
        let held = tokio::task::spawn_blocking(move || {
            publish(&t, Ipv4Addr::LOCALHOST, Some(&runtime)).unwrap()
        })
        .await
        .unwrap();
        let mut client = tokio::net::TcpStream::connect(("127.0.0.1", held[0].forward.port))
            .await
            .unwrap();
        let (mut served, _) = task_side.accept().await.unwrap();
        served.write_all(b"from the task").await.unwrap();
        drop(served);
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "from the task");
    }
}
