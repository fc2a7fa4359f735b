//! Helpers shared by the stand-in's test files.

use kube::{Client, Config};
use kube_standin::StandIn;

/// A kube client (the production client code) for the stand-in.
pub async fn client_for(standin: &StandIn) -> Client {
    let config = Config::new(standin.url().parse().expect("the stand-in URL is a URI"));
    Client::try_from(config).expect("a client for the stand-in")
}

/// The `Status` of an API error; panics on any other error.
pub fn api_error(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}
