//! The one place where wire types (`chat-protocol`) and core types
//! (`chat-core`) meet.
//!
//! Public so that what runs `chat-core` outside this server, such as the
//! terminal client's session simulation, speaks exactly as the server does.

use chat_core::{Command, CommandError, Event, Message, MessageKind, Peer, Presence};
use chat_protocol::{
    self as protocol, ClientFrame, DecodeError, ErrorCode, Limits, PresenceEvent, ServerFrame,
    ServerInfo,
};

use crate::auth::{self, Secret};

/// The core command a client frame asks for. Access tokens are verified
/// here, with `secret` when authentication is on (without it, a `hello`'s
/// token is ignored and `auth` is refused).
///
/// # Errors
/// A token that does not verify (`unauthorized`), or `auth` on a server
/// without authentication (`forbidden`).
pub fn command(frame: ClientFrame, secret: Option<&Secret>) -> Result<Command, DecodeError> {
    let identity = |token: &str, secret: &Secret| {
        secret.verify(token, auth::now_secs()).map(|claims| claims.identity()).map_err(|err| {
            DecodeError {
                code: ErrorCode::Unauthorized,
                message: format!("access token refused: {err}"),
                id: None,
            }
        })
    };
    Ok(match frame {
        ClientFrame::Hello { nick, session, token } => {
            let identity = match (token, secret) {
                (Some(token), Some(secret)) => Some(identity(&token, secret)?),
                _ => None,
            };
            Command::Hello { nick, session, identity }
        }
        ClientFrame::Auth { token } => match secret {
            Some(secret) => Command::Auth { identity: identity(&token, secret)? },
            None => {
                return Err(DecodeError {
                    code: ErrorCode::Forbidden,
                    message: "this server does not use access tokens".to_owned(),
                    id: None,
                });
            }
        },
        ClientFrame::Join { room, after } => Command::Join { room, after },
        ClientFrame::Leave { room } => Command::Leave { room },
        ClientFrame::Say { room, text, action } => {
            Command::Say { room, text, action, attachment: None }
        }
        ClientFrame::Dm { to, conversation, text } => {
            Command::Dm { to: peer(to, conversation), text }
        }
        ClientFrame::Conversation { with, conversation, after, before, limit } => {
            Command::Conversation { with: peer(with, conversation), after, before, limit }
        }
        ClientFrame::Conversations {} => Command::Conversations,
        ClientFrame::Edit { room, seq, text } => Command::Edit { room, seq, text },
        ClientFrame::Delete { room, seq } => Command::Delete { room, seq },
        ClientFrame::Topic { room, topic } => Command::Topic { room, topic },
        ClientFrame::DocCreate { room, title } => Command::DocCreate { room, title },
        ClientFrame::DocRename { room, doc, title } => Command::DocRename { room, doc, title },
        ClientFrame::DocDelete { room, doc } => Command::DocDelete { room, doc },
        ClientFrame::DocVersions { room, doc } => Command::DocVersions { room, doc },
        ClientFrame::DocRestore { room, doc, version } => {
            Command::DocRestore { room, doc, version }
        }
        ClientFrame::Read { room, conversation, seq } => Command::Read { room, conversation, seq },
        ClientFrame::Nick { nick } => Command::Nick { nick },
        ClientFrame::Typing { room } => Command::Typing { room },
        ClientFrame::Rooms {} => Command::Rooms,
        ClientFrame::Who { room, after, prefix, limit } => {
            Command::Who { room, after, prefix, limit }
        }
        ClientFrame::History { room, before, limit } => Command::History { room, before, limit },
        ClientFrame::Ping {} => Command::Ping,
        // The connection handles these itself (see `connection.rs`).
        ClientFrame::Upload { .. }
        | ClientFrame::UploadCancel {}
        | ClientFrame::Subscribe { .. } => {
            return Err(DecodeError {
                code: ErrorCode::BadFrame,
                message: "not a chat command".to_owned(),
                id: None,
            });
        }
    })
}

/// What `welcome` says beyond the core's event: the same for everyone.
#[derive(Debug, Clone)]
pub struct WelcomeInfo {
    /// Who is answering ([`server_info`]).
    pub server: ServerInfo,
    /// The limits in force ([`limits`]).
    pub limits: Limits,
}

/// The limits announced in `welcome`.
pub fn limits(config: &crate::ServerConfig) -> Limits {
    let (chat, transport) = (&config.chat, &config.transport);
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    Limits {
        max_frame_bytes: n(transport.max_message_bytes),
        max_text_bytes: n(chat.max_text_bytes),
        max_nick_chars: n(chat_core::Nick::MAX_CHARS),
        max_room_chars: n(chat_core::RoomName::MAX_CHARS),
        history_per_room: n(chat.history_per_room),
        history_page_max: n(chat.history_page_max),
        join_history: n(chat.join_history),
        typing_interval_ms: u64::try_from(chat.typing_interval.as_millis()).unwrap_or(u64::MAX),
        messages_per_sec: u64::from(chat.messages_per_sec),
        messages_burst: u64::from(chat.messages_burst),
        max_rooms_per_session: n(chat.max_rooms_per_session),
        max_members_per_room: n(chat.max_members_per_room),
        joins_per_sec: u64::from(chat.joins_per_sec),
        joins_burst: u64::from(chat.joins_burst),
        frames_per_sec: u64::from(config.frames_per_sec),
        frames_burst: u64::from(config.frames_burst),
        max_upload_bytes: config.uploads.as_ref().map_or(0, |uploads| uploads.max_bytes),
        edit_window_ms: u64::try_from(config.chat.edit_window.as_millis()).unwrap_or(u64::MAX),
        max_docs_per_room: n(chat.max_docs_per_room),
    }
}

/// The frame an event becomes.
pub fn frame(event: &Event, welcome: &WelcomeInfo) -> ServerFrame {
    let id = |id: &Option<std::sync::Arc<str>>| id.as_deref().map(str::to_owned);
    match event {
        Event::Welcome { id: request, nick, session, resumed, rooms, expires } => {
            ServerFrame::Welcome {
                id: id(request),
                session: session.as_str().to_owned(),
                nick: nick.to_string(),
                resumed: *resumed,
                rooms: rooms.iter().map(|room| room.to_string()).collect(),
                server: welcome.server.clone(),
                limits: welcome.limits.clone(),
                token_expires_ms: expires.map(|at| at.as_unix_millis()),
            }
        }
        Event::Authed { id: request, expires } => {
            ServerFrame::Authed { id: id(request), token_expires_ms: expires.as_unix_millis() }
        }
        Event::Joined {
            id: request,
            room,
            members,
            member_count,
            away,
            history,
            last_seq,
            resume,
            topic,
            docs,
            docs_read_only,
        } => {
            let (resume, gap) = resumed(resume);
            ServerFrame::Joined {
                docs: docs.iter().map(doc_info).collect(),
                docs_read_only: *docs_read_only,
                member_count: u64::try_from(*member_count).unwrap_or(u64::MAX),
                topic: topic.as_deref().map(str::to_owned),
                id: id(request),
                room: room.to_string(),
                members: members.iter().map(ToString::to_string).collect(),
                away: away.iter().map(ToString::to_string).collect(),
                history: history.iter().map(message).collect(),
                last_seq: *last_seq,
                resume,
                gap,
            }
        }
        Event::Doc { id: request, room, action, doc, by } => ServerFrame::Doc {
            id: id(request),
            room: room.to_string(),
            action: action.as_str().to_owned(),
            doc: doc_info(doc),
            by: by.to_string(),
        },
        Event::Topic { id: request, room, topic, by } => ServerFrame::Topic {
            id: id(request),
            room: room.to_string(),
            topic: topic.as_deref().map(str::to_owned),
            by: by.to_string(),
        },
        Event::Read { room, conversation, seq } => ServerFrame::Read {
            room: room.as_ref().map(ToString::to_string),
            conversation: conversation.as_deref().map(str::to_owned),
            seq: *seq,
        },
        Event::Left { id: request, room } => {
            ServerFrame::Left { id: id(request), room: room.to_string() }
        }
        Event::Presence { room, change } => {
            let protocol::PresenceChange { event, nick, old } = presence(change);
            ServerFrame::Presence { room: room.to_string(), event, nick, old }
        }
        Event::TypingBatch { room, nicks, more } => ServerFrame::TypingBatch {
            room: room.to_string(),
            nicks: nicks.iter().map(ToString::to_string).collect(),
            more: u64::try_from(*more).unwrap_or(u64::MAX),
        },
        Event::PresenceBatch { room, changes, more, members } => ServerFrame::PresenceBatch {
            room: room.to_string(),
            changes: changes.iter().map(presence).collect(),
            more: u64::try_from(*more).unwrap_or(u64::MAX),
            members: u64::try_from(*members).unwrap_or(u64::MAX),
        },
        Event::Message(m) => ServerFrame::Message(message(m)),
        Event::Direct { id: request, from, to, with, text, ts, seq, key } => ServerFrame::Direct {
            from: from.to_string(),
            to: to.to_string(),
            with: with.to_string(),
            conversation: key.to_string(),
            seq: *seq,
            text: text.to_string(),
            ts: ts.as_unix_millis(),
            id: id(request),
        },
        Event::Conversation { id: request, key, with, history, last_seq, resume } => {
            let (resume, gap) = resumed(resume);
            ServerFrame::Conversation {
                id: id(request),
                conversation: key.to_string(),
                with: with.to_string(),
                messages: history
                    .iter()
                    .map(|m| protocol::DirectLine {
                        seq: m.seq,
                        ts: m.ts.as_unix_millis(),
                        from: m.from.to_string(),
                        text: m.text.to_string(),
                        id: m.id.as_deref().map(str::to_owned),
                    })
                    .collect(),
                last_seq: *last_seq,
                resume,
                gap,
            }
        }
        Event::Conversations { id: request, list } => ServerFrame::Conversations {
            id: id(request),
            conversations: list
                .iter()
                .map(|c| protocol::ConversationInfo {
                    conversation: c.key.clone(),
                    with: c.with.to_string(),
                    last_seq: c.last_seq,
                    last_ts: c.last_ts.as_unix_millis(),
                })
                .collect(),
        },
        Event::NickChanged { id: request, old, nick } => {
            ServerFrame::Nick { id: id(request), old: old.to_string(), nick: nick.to_string() }
        }
        Event::Typing { room, nick } => {
            ServerFrame::Typing { room: room.to_string(), nick: nick.to_string() }
        }
        Event::Rooms { id: request, rooms } => ServerFrame::Rooms {
            id: id(request),
            rooms: rooms
                .iter()
                .map(|listed| protocol::RoomInfo {
                    name: listed.name.to_string(),
                    members: u64::try_from(listed.members).unwrap_or(u64::MAX),
                    topic: listed.topic.as_deref().map(str::to_owned),
                })
                .collect(),
        },
        Event::Members { id: request, room, members, away, count, more } => ServerFrame::Members {
            id: id(request),
            room: room.to_string(),
            members: members.iter().map(ToString::to_string).collect(),
            away: away.iter().map(ToString::to_string).collect(),
            count: u64::try_from(*count).unwrap_or(u64::MAX),
            more: *more,
        },
        Event::History { id: request, room, messages } => ServerFrame::History {
            id: id(request),
            room: room.to_string(),
            messages: messages.iter().map(message).collect(),
        },
        Event::Pong { id: request } => ServerFrame::Pong { id: id(request) },
        Event::Error { id: request, error: err } => error(id(request), err),
    }
}

/// The `error` frame for a refused command.
pub(crate) fn error(id: Option<String>, error: &CommandError) -> ServerFrame {
    let retry_after_ms = match error {
        CommandError::RateLimited { retry_after_ms }
        | CommandError::JoinRateLimited { retry_after_ms }
        | CommandError::CreateRateLimited { retry_after_ms }
        | CommandError::HistoryRateLimited { retry_after_ms }
        | CommandError::StoreUnavailable { retry_after_ms }
        | CommandError::SharedUnavailable { retry_after_ms } => Some(*retry_after_ms),
        CommandError::QuotaExceeded { retry_after_ms, .. } => *retry_after_ms,
        _ => None,
    };
    ServerFrame::Error { id, code: code(error), message: error.to_string(), retry_after_ms }
}

/// A document's list entry, as frames carry it.
fn doc_info(doc: &chat_core::DocEntry) -> chat_protocol::DocInfo {
    chat_protocol::DocInfo {
        name: doc.name.to_string(),
        title: doc.title.to_string(),
        edited_by: doc.edited_by.to_string(),
        edited_at: doc.edited_at.as_unix_millis(),
    }
}

/// The stable code of a refused command.
pub(crate) fn code(error: &CommandError) -> ErrorCode {
    match error {
        CommandError::HelloRequired => ErrorCode::HelloRequired,
        CommandError::AlreadyGreeted | CommandError::EmptyText => ErrorCode::BadFrame,
        CommandError::InvalidNick(_) => ErrorCode::InvalidNick,
        CommandError::InvalidSession(_) => ErrorCode::InvalidSession,
        CommandError::NickTaken(_) => ErrorCode::NickTaken,
        CommandError::InvalidRoom(_) => ErrorCode::InvalidRoom,
        CommandError::NotInRoom(_) => ErrorCode::NotInRoom,
        CommandError::NoSuchNick(_) => ErrorCode::NoSuchNick,
        CommandError::NoSuchMessage { .. } => ErrorCode::NoSuchMessage,
        CommandError::NoSuchDoc { .. } => ErrorCode::NoSuchDoc,
        CommandError::NoSuchVersion { .. } => ErrorCode::NoSuchVersion,
        CommandError::BadDocTitle(_) => ErrorCode::InvalidDoc,
        CommandError::NotYours(_) => ErrorCode::Forbidden,
        CommandError::BadTopic { .. } => ErrorCode::InvalidTopic,
        CommandError::NoSuchConversation(_) => ErrorCode::NoSuchConversation,
        CommandError::TooLarge { .. } => ErrorCode::TooLarge,
        CommandError::RateLimited { .. }
        | CommandError::JoinRateLimited { .. }
        | CommandError::CreateRateLimited { .. }
        | CommandError::HistoryRateLimited { .. } => ErrorCode::RateLimited,
        CommandError::RoomLimit { .. }
        | CommandError::RoomFull { .. }
        | CommandError::DocLimit { .. } => ErrorCode::LimitReached,
        CommandError::Unauthorized => ErrorCode::Unauthorized,
        CommandError::Forbidden(_) => ErrorCode::Forbidden,
        CommandError::TooManyRooms { .. }
        | CommandError::StoreUnavailable { .. }
        | CommandError::SharedUnavailable { .. }
        | CommandError::RoomUnavailable(_) => ErrorCode::Unavailable,
        CommandError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
    }
}

/// Who this server is; `node`, which node of a cluster.
pub fn server_info(node: Option<String>) -> ServerInfo {
    ServerInfo {
        name: "chat-server".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: protocol::VERSION,
        node,
    }
}

/// Who a `dm` or `conversation` names: a conversation's key if given,
/// else a nick.
fn peer(nick: String, conversation: Option<String>) -> Peer {
    match conversation {
        Some(key) => Peer::Conversation(key),
        None => Peer::Nick(nick),
    }
}

/// A presence change as the wire says it.
fn presence(change: &Presence) -> protocol::PresenceChange {
    let (event, nick, old) = match change {
        Presence::Joined(nick) => (PresenceEvent::Join, nick, None),
        Presence::Left(nick) => (PresenceEvent::Leave, nick, None),
        Presence::Renamed { old, new } => (PresenceEvent::Nick, new, Some(old.to_string())),
        Presence::Away(nick) => (PresenceEvent::Away, nick, None),
        Presence::Back(nick) => (PresenceEvent::Back, nick, None),
    };
    protocol::PresenceChange { event, nick: nick.to_string(), old }
}

/// How a resume went, as the wire says it.
fn resumed(resume: &chat_core::Resume) -> (protocol::Resume, Option<protocol::Gap>) {
    match resume {
        chat_core::Resume::Fresh => (protocol::Resume::Fresh, None),
        chat_core::Resume::Resumed => (protocol::Resume::Resumed, None),
        chat_core::Resume::Gap { from, to } => {
            (protocol::Resume::Gap, Some(protocol::Gap { from: *from, to: *to }))
        }
    }
}

fn message(m: &Message) -> protocol::Message {
    protocol::Message {
        room: m.room.to_string(),
        seq: m.seq,
        ts: m.ts.as_unix_millis(),
        from: m.from.to_string(),
        text: m.text.to_string(),
        id: m.id.as_deref().map(str::to_owned),
        action: m.action,
        attachment: m.attachment.as_ref().map(|a| protocol::Attachment {
            id: a.id.to_string(),
            name: a.name.to_string(),
            mime: a.mime.to_string(),
            size: a.size,
        }),
        edit: match m.kind {
            MessageKind::Edit(of) => Some(of),
            _ => None,
        },
        delete: match m.kind {
            MessageKind::Delete(of) => Some(of),
            _ => None,
        },
        edited: m.kind == MessageKind::Edited,
        deleted: m.kind == MessageKind::Deleted,
    }
}

/// The `error` frame for a refusal found by the server itself, outside the
/// core (an upload refused, a channel that does not exist).
pub(crate) fn refusal(id: Option<String>, code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::Error { id, code, message: message.to_owned(), retry_after_ms: None }
}

/// The `error` frame for a message that waited too long in an overloaded
/// server: not kept, to be sent again after `retry_after_ms`.
pub(crate) fn overloaded(id: Option<String>, retry_after_ms: u64) -> ServerFrame {
    ServerFrame::Error {
        id,
        code: ErrorCode::Unavailable,
        message: format!("the server is overloaded; send it again in {retry_after_ms} ms"),
        retry_after_ms: Some(retry_after_ms),
    }
}

/// The `error` frame for a message the engine the nodes share could not
/// take (Redis unreachable): not kept, to be sent again.
pub(crate) fn cluster_unavailable(id: Option<String>) -> ServerFrame {
    ServerFrame::Error {
        id,
        code: ErrorCode::Unavailable,
        message: "the cluster's Redis cannot be reached; send it again in a second".to_owned(),
        retry_after_ms: Some(1000),
    }
}

/// The `error` frame for a frame that could not be decoded.
pub fn malformed(error: DecodeError) -> ServerFrame {
    ServerFrame::Error {
        id: error.id,
        code: error.code,
        message: error.message,
        retry_after_ms: None,
    }
}

/// The `error` frame for a frame dropped for going over the frame rate.
pub(crate) fn too_many_frames(retry_after_ms: u64) -> ServerFrame {
    ServerFrame::Error {
        id: None,
        code: ErrorCode::RateLimited,
        message: format!("too many frames; retry in {retry_after_ms} ms"),
        retry_after_ms: Some(retry_after_ms),
    }
}

/// The answer to a `subscribe` that was granted.
pub(crate) fn subscribed(id: Option<String>, channel: String) -> ServerFrame {
    ServerFrame::Subscribed { id, channel }
}

/// The answer to an `upload` that may go on.
pub(crate) fn upload_ready(id: Option<String>, chunk_bytes: u64) -> ServerFrame {
    ServerFrame::UploadReady { id, chunk_bytes }
}

/// The `say` that carries a complete upload.
pub(crate) fn upload_say(room: String, text: String, attachment: chat_core::Attachment) -> Command {
    Command::Say { room, text, action: false, attachment: Some(std::sync::Arc::new(attachment)) }
}

/// What a new `$stats` subscriber gets first: the last minutes.
pub(crate) fn stats_history(history: &crate::stats::History) -> ServerFrame {
    let points = history
        .points()
        .map(|point| protocol::StatsPoint {
            ts: point.ts_ms,
            messages_per_sec: point.messages_per_sec,
            connections: point.connections,
        })
        .collect();
    ServerFrame::StatsHistory { interval_ms: 1000, points }
}

/// The `$stats` frame of a snapshot of the counters.
pub(crate) fn stats(snapshot: &crate::stats::Snapshot) -> ServerFrame {
    ServerFrame::Stats(protocol::Stats {
        uptime_ms: snapshot.uptime_ms,
        connections: snapshot.connections,
        sessions: snapshot.sessions,
        people: snapshot.people,
        watchers: snapshot.watchers,
        rooms: snapshot
            .rooms
            .iter()
            .map(|(name, members)| protocol::RoomInfo {
                name: name.to_string(),
                members: u64::try_from(*members).unwrap_or(u64::MAX),
                topic: None,
            })
            .collect(),
        room_count: snapshot.room_count,
        messages_per_sec: snapshot.messages_per_sec,
        messages_total: snapshot.messages_total,
        bytes_in: snapshot.bytes_in,
        bytes_out: snapshot.bytes_out,
        queued_frames: snapshot.queued_frames,
        queued_frames_max: snapshot.queued_frames_max,
        held_for_storage: snapshot.held_for_storage,
        history_bytes: snapshot.history_bytes,
        file_bytes: snapshot.file_bytes,
        storage_failing: snapshot.storage_failing,
        node: snapshot.node.clone(),
        cluster_down: snapshot.cluster_down.map(str::to_owned),
        cluster: snapshot.cluster.map(|totals| protocol::ClusterTotals {
            nodes: totals.nodes,
            connections: totals.connections,
            people: totals.people,
            messages_per_sec: totals.messages_per_sec,
        }),
    })
}
