//! Control API calls counted and timed for metrics (`skiff_control_requests`,
//! `skiff_control_request_seconds`): a wrapper around the Control service on both the
//! cluster port and the local socket, labelled by RPC method and gRPC code.
//!
//! The code is the one in the response's headers, where tonic puts a handler's error; a
//! call that fails later, in a stream's trailers, counts as OK. A streaming call's time
//! ends when its response starts.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use manager::metrics::METRICS;
use tonic::server::NamedService;
use tower::Service;

/// `S`, with every call it answers counted and timed.
#[derive(Debug, Clone)]
pub struct Measured<S>(pub S);

impl<S: NamedService> NamedService for Measured<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for Measured<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let started = Instant::now();
        let answer = self.0.call(req);
        Box::pin(async move {
            let answer = answer.await;
            if let Ok(response) = &answer {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .map_or(tonic::Code::Ok, |v| tonic::Code::from_bytes(v.as_bytes()));
                METRICS.control_call(&method, &format!("{code:?}"), started.elapsed());
            }
            answer
        })
    }
}
