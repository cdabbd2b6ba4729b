//! Every frame survives encoding and decoding unchanged.

use chat_protocol::{
    Attachment, ClientFrame, ClientMessage, ConversationInfo, DirectLine, ErrorCode, Gap, Limits,
    Message, PresenceEvent, Resume, RoomInfo, ServerFrame, ServerInfo, Stats, decode_client,
    encode_client,
};

fn message() -> Message {
    Message {
        edit: None,
        delete: None,
        edited: false,
        deleted: false,
        room: "lobby".into(),
        seq: 7,
        ts: 1_700_000_000_000,
        from: "alice".into(),
        text: "hi \"there\" <b>\n☃".into(),
        id: Some("m7".into()),
        action: false,
        attachment: None,
    }
}

#[test]
fn client_frames_round_trip() {
    let frames = vec![
        ClientFrame::Hello { nick: Some("alice".into()), session: None, token: None },
        ClientFrame::Hello { nick: None, session: Some("5f0c6a4e".into()), token: None },
        ClientFrame::Hello { nick: None, session: None, token: Some("eyJ.eyJ.sig".into()) },
        ClientFrame::Join { room: "lobby".into(), after: None },
        ClientFrame::Join { room: "lobby".into(), after: Some(41) },
        ClientFrame::Leave { room: "lobby".into() },
        ClientFrame::Say { room: "lobby".into(), text: "hello\nworld".into(), action: false },
        ClientFrame::Say { room: "lobby".into(), text: "waves".into(), action: true },
        ClientFrame::Dm { to: "bob".into(), conversation: None, text: "psst".into() },
        ClientFrame::Dm {
            to: String::new(),
            conversation: Some("~0a1b".into()),
            text: "hi".into(),
        },
        ClientFrame::Conversation {
            with: "bob".into(),
            conversation: None,
            after: Some(3),
            before: None,
            limit: None,
        },
        ClientFrame::Conversation {
            with: String::new(),
            conversation: Some("~0a1b".into()),
            after: None,
            before: Some(9),
            limit: Some(20),
        },
        ClientFrame::Conversations {},
        ClientFrame::Edit { room: "lobby".into(), seq: 42, text: "fixed".into() },
        ClientFrame::Delete { room: "lobby".into(), seq: 42 },
        ClientFrame::Topic { room: "lobby".into(), topic: "plans".into() },
        ClientFrame::DocCreate { room: "lobby".into(), title: "Meeting notes".into() },
        ClientFrame::DocRename {
            room: "lobby".into(),
            doc: "meeting-notes".into(),
            title: "Minutes".into(),
        },
        ClientFrame::DocDelete { room: "lobby".into(), doc: "meeting-notes".into() },
        ClientFrame::DocVersions { room: "lobby".into(), doc: "notes".into() },
        ClientFrame::DocRestore { room: "lobby".into(), doc: "notes".into(), version: 9 },
        ClientFrame::Read { room: Some("lobby".into()), conversation: None, seq: 57 },
        ClientFrame::Read { room: None, conversation: Some("~0a".into()), seq: 3 },
        ClientFrame::Nick { nick: "alicia".into() },
        ClientFrame::Typing { room: "lobby".into() },
        ClientFrame::Rooms {},
        ClientFrame::Who { room: "lobby".into(), after: None, prefix: None, limit: None },
        ClientFrame::Who {
            room: "lobby".into(),
            after: Some("bob".into()),
            prefix: Some("ca".into()),
            limit: Some(50),
        },
        ClientFrame::History { room: "lobby".into(), before: Some(10), limit: Some(5) },
        ClientFrame::History { room: "lobby".into(), before: None, limit: None },
        ClientFrame::Upload {
            room: "lobby".into(),
            name: "cat.png".into(),
            mime: "image/png".into(),
            size: 1234,
            text: String::new(),
        },
        ClientFrame::Upload {
            room: "lobby".into(),
            name: "notes.txt".into(),
            mime: "text/plain".into(),
            size: 1,
            text: "my notes".into(),
        },
        ClientFrame::UploadCancel {},
        ClientFrame::Subscribe { channel: "$stats".into(), token: None },
        ClientFrame::Subscribe { channel: "$stats".into(), token: Some("t".into()) },
        ClientFrame::Ping {},
        ClientFrame::Auth { token: "eyJ.eyJ.sig".into() },
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for frame in frames {
        for id in [None, Some("req-1".to_owned())] {
            let message = ClientMessage { id, frame: frame.clone() };
            let text = encode_client(&message);
            assert_eq!(decode_client(&text), Ok(message), "{text}");
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            kinds.insert(value["type"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(kinds.len(), ClientFrame::TYPES.len(), "every client frame round-tripped");
}

fn doc_info() -> chat_protocol::DocInfo {
    chat_protocol::DocInfo {
        name: "meeting-notes".into(),
        title: "Minutes".into(),
        edited_by: "alice".into(),
        edited_at: 1_732_442_400_000,
    }
}

#[test]
fn server_frames_round_trip() {
    let limits = Limits {
        edit_window_ms: 0,
        max_frame_bytes: 65536,
        max_text_bytes: 8192,
        max_nick_chars: 32,
        max_room_chars: 64,
        history_per_room: 1000,
        history_page_max: 200,
        join_history: 50,
        typing_interval_ms: 2000,
        messages_per_sec: 10,
        messages_burst: 30,
        max_rooms_per_session: 100,
        max_members_per_room: 10_000,
        joins_per_sec: 5,
        joins_burst: 50,
        frames_per_sec: 50,
        frames_burst: 200,
        max_upload_bytes: 8 << 20,
        max_docs_per_room: 100,
    };
    let id = Some("r".to_owned());
    let frames = vec![
        ServerFrame::Welcome {
            id: id.clone(),
            session: "s".into(),
            nick: "alice".into(),
            resumed: true,
            rooms: vec!["lobby".into()],
            server: ServerInfo {
                name: "chat-server".into(),
                version: "0.1.0".into(),
                protocol: 1,
                node: None,
            },
            limits,
            token_expires_ms: Some(1_732_442_400_000),
        },
        ServerFrame::Joined {
            member_count: 1,
            topic: None,
            id: id.clone(),
            room: "lobby".into(),
            members: vec!["alice".into(), "bob".into()],
            away: Vec::new(),
            history: vec![message()],
            last_seq: 7,
            resume: Resume::Gap,
            gap: Some(Gap { from: 2, to: 6 }),
            docs: vec![doc_info()],
            docs_read_only: false,
        },
        ServerFrame::Joined {
            member_count: 1,
            topic: None,
            id: None,
            room: "lobby".into(),
            members: vec![],
            away: Vec::new(),
            history: vec![],
            last_seq: 0,
            resume: Resume::Fresh,
            gap: None,
            docs: Vec::new(),
            docs_read_only: false,
        },
        ServerFrame::Left { id: None, room: "lobby".into() },
        ServerFrame::Presence {
            room: "lobby".into(),
            event: PresenceEvent::Join,
            nick: "bob".into(),
            old: None,
        },
        ServerFrame::Presence {
            room: "lobby".into(),
            event: PresenceEvent::Leave,
            nick: "bob".into(),
            old: None,
        },
        ServerFrame::Presence {
            room: "lobby".into(),
            event: PresenceEvent::Nick,
            nick: "robert".into(),
            old: Some("bob".into()),
        },
        ServerFrame::Presence {
            room: "lobby".into(),
            event: PresenceEvent::Away,
            nick: "bob".into(),
            old: None,
        },
        ServerFrame::Presence {
            room: "lobby".into(),
            event: PresenceEvent::Back,
            nick: "bob".into(),
            old: None,
        },
        ServerFrame::Message(message()),
        ServerFrame::Message(Message { id: None, action: true, ..message() }),
        ServerFrame::Message(Message {
            text: String::new(),
            attachment: Some(Attachment {
                id: "ab".repeat(32),
                name: "cat.png".into(),
                mime: "image/png".into(),
                size: 1234,
            }),
            ..message()
        }),
        ServerFrame::UploadReady { id: id.clone(), chunk_bytes: 65536 },
        ServerFrame::Subscribed { id: id.clone(), channel: "$stats".into() },
        ServerFrame::Stats(Stats {
            uptime_ms: 1,
            connections: 2,
            sessions: 3,
            people: 2,
            watchers: 1,
            rooms: vec![RoomInfo { topic: None, name: "lobby".into(), members: 3 }],
            room_count: 1,
            messages_per_sec: 4,
            messages_total: 5,
            bytes_in: 6,
            bytes_out: 7,
            queued_frames: 8,
            queued_frames_max: 9,
            held_for_storage: 10,
            history_bytes: 11,
            file_bytes: 12,
            storage_failing: false,
            node: None,
            cluster_down: None,
            cluster: None,
        }),
        ServerFrame::Direct {
            from: "a".into(),
            to: "b".into(),
            with: "b".into(),
            conversation: "~0a1b".into(),
            seq: 4,
            text: "t".into(),
            ts: 1,
            id: id.clone(),
        },
        ServerFrame::Conversation {
            id: id.clone(),
            conversation: "~0a1b".into(),
            with: "b".into(),
            messages: vec![DirectLine {
                seq: 3,
                ts: 2,
                from: "b".into(),
                text: "t".into(),
                id: None,
            }],
            last_seq: 3,
            resume: Resume::Gap,
            gap: Some(Gap { from: 1, to: 2 }),
        },
        ServerFrame::Read { room: Some("lobby".into()), conversation: None, seq: 57 },
        ServerFrame::PresenceBatch {
            room: "general".into(),
            changes: vec![chat_protocol::PresenceChange {
                event: PresenceEvent::Nick,
                nick: "b".into(),
                old: Some("a".into()),
            }],
            more: 3,
            members: 20_000,
        },
        ServerFrame::TypingBatch { room: "general".into(), nicks: vec!["ann".into()], more: 4 },
        ServerFrame::StatsHistory {
            interval_ms: 1000,
            points: vec![chat_protocol::StatsPoint { ts: 1, messages_per_sec: 2, connections: 3 }],
        },
        ServerFrame::Topic {
            id: id.clone(),
            room: "lobby".into(),
            topic: Some("plans".into()),
            by: "alice".into(),
        },
        ServerFrame::Topic { id: None, room: "lobby".into(), topic: None, by: "bob".into() },
        ServerFrame::DocVersions {
            id: id.clone(),
            room: "lobby".into(),
            doc: "notes".into(),
            versions: vec![chat_protocol::DocVersion { version: 9, ts: 1, bytes: 300 }],
        },
        ServerFrame::Doc {
            id: id.clone(),
            room: "lobby".into(),
            action: "renamed".into(),
            doc: doc_info(),
            by: "bob".into(),
        },
        ServerFrame::Conversations {
            id: id.clone(),
            conversations: vec![ConversationInfo {
                conversation: "~0a1b".into(),
                with: "b".into(),
                last_seq: 3,
                last_ts: 2,
            }],
        },
        ServerFrame::Nick { id: id.clone(), old: "a".into(), nick: "b".into() },
        ServerFrame::Typing { room: "lobby".into(), nick: "alice".into() },
        ServerFrame::Rooms {
            id: None,
            rooms: vec![RoomInfo { topic: None, name: "lobby".into(), members: 3 }],
        },
        ServerFrame::Members {
            count: 0,
            more: false,
            id: None,
            room: "lobby".into(),
            members: vec!["alice".into(), "bob".into()],
            away: vec!["bob".into()],
        },
        ServerFrame::History { id: id.clone(), room: "lobby".into(), messages: vec![message()] },
        ServerFrame::Pong { id: id.clone() },
        ServerFrame::Authed { id: id.clone(), token_expires_ms: 1_732_442_400_000 },
        ServerFrame::Error {
            id,
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after_ms: Some(5),
        },
        ServerFrame::Error {
            id: None,
            code: ErrorCode::BadJson,
            message: "x".into(),
            retry_after_ms: None,
        },
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for frame in frames {
        let text = frame.encode();
        assert_eq!(ServerFrame::decode(&text).ok(), Some(frame), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        kinds.insert(value["type"].as_str().unwrap_or_default().to_owned());
    }
    let all: std::collections::BTreeSet<String> =
        ServerFrame::TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(kinds, all, "every server frame round-tripped");
}

#[test]
fn unknown_error_codes_from_a_newer_server_still_decode() {
    let frame = ServerFrame::decode(r#"{"type":"error","code":"brand_new","message":"m"}"#);
    assert!(matches!(frame, Ok(ServerFrame::Error { code: ErrorCode::Unknown, .. })), "{frame:?}");
}

#[test]
fn error_codes_serialize_as_documented() {
    for code in
        [ErrorCode::BadJson, ErrorCode::NickTaken, ErrorCode::RateLimited, ErrorCode::Unavailable]
    {
        assert_eq!(
            serde_json::to_value(code).ok(),
            Some(serde_json::Value::String(code.as_str().to_owned()))
        );
    }
}

#[test]
fn limits_from_servers_that_announced_fewer_fields_still_decode() {
    let old = r#"{"type":"welcome","session":"s","nick":"a","resumed":false,
        "server":{"name":"chat-server","version":"0.1.0","protocol":1},
        "limits":{"max_frame_bytes":65536,"max_text_bytes":8192,"max_nick_chars":32,
        "max_room_chars":64,"history_per_room":1000,"history_page_max":200,"join_history":50,
        "typing_interval_ms":2000,"messages_per_sec":10,"messages_burst":30}}"#;
    let Ok(ServerFrame::Welcome { limits, .. }) = ServerFrame::decode(old) else {
        panic!("an older welcome must decode");
    };
    assert_eq!(limits.messages_burst, 30);
    assert_eq!((limits.max_rooms_per_session, limits.frames_per_sec), (0, 0), "0: not announced");
}
