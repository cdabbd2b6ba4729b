//! Socket.IO (issue #20): what a page written for a Socket.IO server finds
//! here.

use chat_server::ServerConfig;

use crate::support::{Server, http_get};

#[tokio::test]
async fn the_official_client_script_is_served_where_socket_io_pages_look_for_it() {
    let lock =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web-vendor/package-lock.json");
    let lock: serde_json::Value = serde_json::from_slice(&std::fs::read(lock).unwrap()).unwrap();
    let version = lock["packages"]["node_modules/socket.io-client"]["version"].as_str().unwrap();
    let server = Server::start(ServerConfig::default()).await;
    for path in ["/socket.io/socket.io.js", "/socket.io/socket.io.min.js"] {
        let (status, headers, body) = http_get(&server, path, None).await;
        assert_eq!(status, 200, "{path}");
        let kind = headers.iter().find(|(name, _)| name == "content-type").unwrap();
        assert!(kind.1.starts_with("text/javascript"), "{kind:?}");
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with(&format!("/*!\n * Socket.IO v{version}\n")), "the pinned version");
        assert!(body.contains(".io=") && body.len() > 40_000, "the whole browser bundle");
    }
    server.shutdown().await;
}
