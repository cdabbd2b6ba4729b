//! Authentication on a real server: hello needs a signed token, the token
//! binds the nick and the rooms, `auth` renews it, expiry closes with 4011.

use crate::support::{Client, Server};
use chat_server::ServerConfig;
use chat_server::auth::{Claims, Secret, now_secs};
use serde_json::json;

fn secret() -> Secret {
    Secret::new(b"a test secret of at least 32 bytes!".to_vec()).unwrap()
}

fn token(nick: &str, valid_secs: u64, rooms: Option<&[&str]>) -> String {
    secret().sign(&Claims {
        sub: nick.to_owned(),
        exp: now_secs() + valid_secs,
        rooms: rooms.map(|rooms| rooms.iter().map(|r| (*r).to_owned()).collect()),
    })
}

async fn server() -> Server {
    Server::start(ServerConfig { auth_secret: Some(secret()), ..ServerConfig::default() }).await
}

#[tokio::test]
async fn hello_needs_a_valid_token_and_the_token_names_the_nick() {
    let server = server().await;
    let mut anonymous = Client::connect(&server).await;
    anonymous.send(json!({"type": "hello", "nick": "alice", "id": "h"})).await;
    assert_eq!(anonymous.expect_error("unauthorized").await["id"], "h");

    let forged = {
        let other = Secret::new(b"not the server's secret, but long!!".to_vec()).unwrap();
        other.sign(&Claims { sub: "alice".into(), exp: now_secs() + 60, rooms: None })
    };
    for bad in [forged.as_str(), "not.a.token", ""] {
        let mut client = Client::connect(&server).await;
        client.send(json!({"type": "hello", "token": bad})).await;
        client.expect_error("unauthorized").await;
    }

    let valid = token("alice", 3600, None);
    let mut impostor = Client::connect(&server).await;
    impostor.send(json!({"type": "hello", "nick": "root", "token": valid})).await;
    impostor.expect_error("forbidden").await;

    let mut alice = Client::connect(&server).await;
    alice.send(json!({"type": "hello", "token": valid})).await;
    let welcome = alice.expect("welcome").await;
    assert_eq!(welcome["nick"], "alice");
    let expires = welcome["token_expires_ms"].as_u64().unwrap();
    assert!(expires > now_secs() * 1000, "{welcome}");
    alice.send(json!({"type": "nick", "nick": "alicia"})).await;
    alice.expect_error("forbidden").await;
    server.shutdown().await;
}

#[tokio::test]
async fn rooms_are_limited_to_the_tokens_patterns_and_auth_renews() {
    let server = server().await;
    let mut alice = Client::connect(&server).await;
    alice.send(json!({"type": "hello", "token": token("alice", 3600, Some(&["team-*"]))})).await;
    alice.expect("welcome").await;
    alice.send(json!({"type": "join", "room": "lobby"})).await;
    alice.expect_error("forbidden").await;
    alice.send(json!({"type": "join", "room": "team-a"})).await;
    alice.expect("joined").await;

    let fresh = token("alice", 7200, Some(&["team-*"]));
    alice.send(json!({"type": "auth", "id": "r", "token": fresh})).await;
    let authed = alice.expect("authed").await;
    assert_eq!(authed["id"], "r");
    assert!(authed["token_expires_ms"].as_u64().unwrap() > (now_secs() + 3600) * 1000);
    alice.send(json!({"type": "auth", "token": token("bob", 3600, None)})).await;
    alice.expect_error("forbidden").await;
    alice.send(json!({"type": "auth", "token": "garbage"})).await;
    alice.expect_error("unauthorized").await;
    alice.expect_nothing_pending().await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_closes_the_connection_with_4011() {
    let server = server().await;
    let mut bob = Client::connect(&server).await;
    bob.send(json!({"type": "hello", "token": token("bob", 3600, None)})).await;
    bob.expect("welcome").await;
    bob.send(json!({"type": "join", "room": "lobby"})).await;
    bob.expect("joined").await;
    let mut brief = Client::connect(&server).await;
    // Valid for one more second (exp has second precision).
    brief.send(json!({"type": "hello", "token": token("brief", 1, None)})).await;
    brief.expect("welcome").await;
    brief.send(json!({"type": "join", "room": "lobby"})).await;
    brief.expect("joined").await;
    bob.expect("presence").await;
    let (close, _) = brief.until_closed().await;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4011));
    // The session ended: bob sees brief leave.
    let left = bob.expect("presence").await;
    assert_eq!((left["event"].as_str(), left["nick"].as_str()), (Some("leave"), Some("brief")));
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_secret_tokens_are_ignored_and_auth_is_refused() {
    let server = Server::start(ServerConfig::default()).await;
    let mut alice = Client::connect(&server).await;
    alice.send(json!({"type": "hello", "nick": "alice", "token": "whatever"})).await;
    assert_eq!(alice.expect("welcome").await["nick"], "alice");
    alice.send(json!({"type": "auth", "token": "whatever"})).await;
    alice.expect_error("forbidden").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_tokens_room_patterns_decide_which_documents_it_opens_also_when_renewed() {
    use crate::docs::{Editor, path};
    let server = server().await;
    let mut alice = Client::connect(&server).await;
    alice.send(json!({"type": "hello", "token": token("alice", 3600, Some(&["team-*"]))})).await;
    let session = alice.expect("welcome").await["session"].as_str().unwrap().to_owned();
    alice.send(json!({"type": "join", "room": "team-a"})).await;
    alice.expect("joined").await;
    alice.send(json!({"type": "join", "room": "lobby"})).await;
    alice.expect_error("forbidden").await;
    // Her team's document opens; the lobby's does not.
    let mut notes = Editor::open(&server, &path("team-a", "notes", &session)).await.unwrap();
    notes.insert(0, "plan").await;
    notes.round_trip().await;
    assert_eq!(alice.expect("doc").await["action"], "created");
    let refused = Editor::open(&server, &path("lobby", "notes", &session)).await.err();
    assert_eq!(refused, Some((4403, "not a member of #lobby".to_owned())));
    // Renewed for other rooms only: the team's document closes for good.
    alice.send(json!({"type": "auth", "token": token("alice", 3600, Some(&["ops-*"]))})).await;
    assert_eq!(alice.expect("left").await["room"], "team-a");
    alice.expect("authed").await;
    assert_eq!(notes.closed().await, (4403, "no longer a member of #team-a".to_owned()));
    server.shutdown().await;
}
