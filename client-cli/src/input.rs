//! What a typed line asks for.

use chat_protocol::ClientFrame;

/// The meaning of one input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Send this frame.
    Send(ClientFrame),
    /// Leave the chat.
    Quit,
    /// Show the command list.
    Help,
    /// Send the file at `path` to `room`.
    Upload { room: String, path: String },
    /// Save the attachment whose id starts with `id`, to `to` if given.
    Download { id: String, to: Option<String> },
    /// Nothing to do (an empty line).
    Nothing,
    /// The line cannot be acted on; tell the user why.
    Invalid(String),
}

/// The command list shown by `/help`.
/// The commands both modes take, as (usage, what it does), for `/help`.
pub const COMMANDS: &[(&str, &str)] = &[
    ("TEXT", "say TEXT in the current room (start with // to say something beginning with /)"),
    ("/join ROOM", "join ROOM and make it current"),
    ("/leave [ROOM]", "leave ROOM (default: the current room)"),
    ("/nick NAME", "change nick"),
    ("/msg NICK TEXT", "send a direct message"),
    ("/me ACTION", "say an action: * you ACTION"),
    (
        "/who [ROOM [PREFIX]]",
        "list ROOM's members (default: the current room), or those whose nick starts with PREFIX",
    ),
    ("/topic TEXT", "set the current room's topic (/topic - clears it)"),
    ("/upload PATH", "send the file at PATH to the current room"),
    ("/download ID [TO]", "save a file sent to a room (ID as shown: its first characters)"),
    ("/rooms", "list the rooms"),
    ("/quit", "leave (also: end of input)"),
    ("/help", "this list"),
];

/// `/help` as text: every command with what it does, in aligned columns.
pub fn help(commands: &[(&str, &str)]) -> String {
    let width = commands.iter().map(|(usage, _)| usage.chars().count()).max().unwrap_or(0);
    let mut text = "commands:".to_owned();
    for (usage, what) in commands {
        text.push_str(&format!("\n  {usage:<width$}  {what}"));
    }
    text
}

/// Parses one line typed while `current` is the current room.
pub fn parse(line: &str, current: Option<&str>) -> Input {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.trim().is_empty() {
        return Input::Nothing;
    }
    let say = |text: &str| match current {
        Some(room) => Input::Send(ClientFrame::Say {
            room: room.to_owned(),
            text: text.to_owned(),
            action: false,
        }),
        None => Input::Invalid("not in a room; /join one first".to_owned()),
    };
    if let Some(literal) = trimmed.strip_prefix("//") {
        return say(&format!("/{literal}"));
    }
    let Some(command_line) = trimmed.strip_prefix('/') else {
        return say(trimmed);
    };
    let (command, rest) = match command_line.split_once(char::is_whitespace) {
        Some((command, rest)) => (command, rest.trim()),
        None => (command_line, ""),
    };
    let room_or_current = |arg: &str| -> Option<String> {
        let arg = arg.trim_start_matches('#');
        if arg.is_empty() { current.map(str::to_owned) } else { Some(arg.to_owned()) }
    };
    match command.to_ascii_lowercase().as_str() {
        "join" | "j" if !rest.is_empty() => Input::Send(ClientFrame::Join {
            room: rest.trim_start_matches('#').to_owned(),
            after: None,
        }),
        "join" | "j" => Input::Invalid("usage: /join ROOM".to_owned()),
        "leave" | "part" => match room_or_current(rest) {
            Some(room) => Input::Send(ClientFrame::Leave { room }),
            None => Input::Invalid("not in a room".to_owned()),
        },
        "nick" if !rest.is_empty() => Input::Send(ClientFrame::Nick { nick: rest.to_owned() }),
        "nick" => Input::Invalid("usage: /nick NAME".to_owned()),
        "topic" => match (current, rest) {
            (None, _) => Input::Invalid("not in a room".to_owned()),
            (_, "") => Input::Invalid("usage: /topic TEXT (/topic - clears it)".to_owned()),
            (Some(room), text) => Input::Send(ClientFrame::Topic {
                room: room.to_owned(),
                topic: if text == "-" { String::new() } else { text.to_owned() },
            }),
        },
        "msg" | "dm" => match rest.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Input::Send(ClientFrame::Dm {
                to: to.to_owned(),
                conversation: None,
                text: text.trim_start().to_owned(),
            }),
            _ => Input::Invalid("usage: /msg NICK TEXT".to_owned()),
        },
        "me" if !rest.is_empty() => match current {
            Some(room) => Input::Send(ClientFrame::Say {
                room: room.to_owned(),
                text: rest.to_owned(),
                action: true,
            }),
            None => Input::Invalid("not in a room; /join one first".to_owned()),
        },
        "me" => Input::Invalid("usage: /me ACTION".to_owned()),
        "who" | "names" => {
            let (room, prefix) = match rest.split_once(char::is_whitespace) {
                Some((room, prefix)) => (room, Some(prefix.trim().to_owned())),
                None => (rest, None),
            };
            match room_or_current(room) {
                Some(room) => {
                    Input::Send(ClientFrame::Who { room, after: None, prefix, limit: None })
                }
                None => Input::Invalid("usage: /who ROOM [PREFIX]".to_owned()),
            }
        }
        "rooms" | "list" => Input::Send(ClientFrame::Rooms {}),
        "upload" if !rest.is_empty() => match current {
            Some(room) => Input::Upload { room: room.to_owned(), path: rest.to_owned() },
            None => Input::Invalid("not in a room; /join one first".to_owned()),
        },
        "upload" => Input::Invalid("usage: /upload PATH".to_owned()),
        "download" => match rest.split_once(char::is_whitespace) {
            Some((id, to)) => Input::Download { id: id.to_owned(), to: Some(to.trim().to_owned()) },
            None if !rest.is_empty() => Input::Download { id: rest.to_owned(), to: None },
            None => Input::Invalid("usage: /download ID [PATH]".to_owned()),
        },
        "quit" | "exit" | "q" => Input::Quit,
        "help" | "?" => Input::Help,
        _ => Input::Invalid(format!("unknown command /{command} (try /help)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(room: &str, text: &str, action: bool) -> Input {
        Input::Send(ClientFrame::Say { room: room.into(), text: text.into(), action })
    }

    #[test]
    fn lines() {
        let lobby = Some("lobby");
        let cases: Vec<(&str, Option<&str>, Input)> = vec![
            ("hello", lobby, say("lobby", "hello", false)),
            ("  indented  ", lobby, say("lobby", "  indented  ", false)),
            ("hello\r\n", lobby, say("lobby", "hello", false)),
            ("", lobby, Input::Nothing),
            ("   ", lobby, Input::Nothing),
            ("//slash", lobby, say("lobby", "/slash", false)),
            ("/me waves hi", lobby, say("lobby", "waves hi", true)),
            (
                "/join #dev",
                lobby,
                Input::Send(ClientFrame::Join { room: "dev".into(), after: None }),
            ),
            (
                "/JOIN dev",
                lobby,
                Input::Send(ClientFrame::Join { room: "dev".into(), after: None }),
            ),
            ("/leave", lobby, Input::Send(ClientFrame::Leave { room: "lobby".into() })),
            ("/leave dev", lobby, Input::Send(ClientFrame::Leave { room: "dev".into() })),
            ("/nick bob", lobby, Input::Send(ClientFrame::Nick { nick: "bob".into() })),
            (
                "/msg bob hi there",
                lobby,
                Input::Send(ClientFrame::Dm {
                    to: "bob".into(),
                    conversation: None,
                    text: "hi there".into(),
                }),
            ),
            (
                "/who",
                lobby,
                Input::Send(ClientFrame::Who {
                    room: "lobby".into(),
                    after: None,
                    prefix: None,
                    limit: None,
                }),
            ),
            (
                "/who #big ann",
                lobby,
                Input::Send(ClientFrame::Who {
                    room: "big".into(),
                    after: None,
                    prefix: Some("ann".into()),
                    limit: None,
                }),
            ),
            ("/rooms", None, Input::Send(ClientFrame::Rooms {})),
            ("/quit", lobby, Input::Quit),
            (
                "/upload my cat.png",
                lobby,
                Input::Upload { room: "lobby".into(), path: "my cat.png".into() },
            ),
            ("/download 9f86d081", None, Input::Download { id: "9f86d081".into(), to: None }),
            (
                "/download 9f86d081 /tmp/x y.png",
                None,
                Input::Download { id: "9f86d081".into(), to: Some("/tmp/x y.png".into()) },
            ),
            ("/help", lobby, Input::Help),
        ];
        for (line, current, expected) in cases {
            assert_eq!(parse(line, current), expected, "{line:?}");
        }
    }

    #[test]
    fn mistakes_are_explained() {
        let invalid =
            |line: &str, current: Option<&str>| matches!(parse(line, current), Input::Invalid(_));
        assert!(invalid("hello", None));
        assert!(invalid("/me waves", None));
        assert!(invalid("/leave", None));
        assert!(invalid("/join", Some("lobby")));
        assert!(invalid("/msg bob", Some("lobby")));
        assert!(invalid("/nick", Some("lobby")));
        assert!(invalid("/frobnicate", Some("lobby")));
        assert!(invalid("/upload", Some("lobby")));
        assert!(invalid("/upload x", None));
        assert!(invalid("/download", Some("lobby")));
    }
}
