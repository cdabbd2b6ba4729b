//! The input line of the full-screen client: editing, input history and
//! Tab completion, as plain state that tests drive without a terminal.
//!
//! Positions are in `char`s, not bytes, so editing never splits a
//! character; display width (CJK, emoji) is the renderer's business.

/// The line being typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Editor {
    text: Vec<char>,
    cursor: usize,
    /// Lines entered before, oldest first, and where Up/Down is in them.
    history: Vec<String>,
    browsing: Option<usize>,
    /// What was being typed when Up first went into the history.
    draft: Option<Vec<char>>,
    /// The last Tab: the candidates and which one is shown, so Tab again
    /// cycles.
    completing: Option<Completing>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Completing {
    start: usize,
    candidates: Vec<String>,
    shown: usize,
}

/// The most lines kept for Up/Down.
const HISTORY_MAX: usize = 500;

impl Editor {
    /// The text as typed.
    pub fn text(&self) -> String {
        self.text.iter().collect()
    }

    /// Where the cursor is, in characters from the start.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    fn edited(&mut self) {
        self.completing = None;
        self.browsing = None;
        self.draft = None;
    }

    /// Inserts text at the cursor. Pasted line breaks become spaces, so a
    /// multi-line paste is one message the user can still look at, not a
    /// burst of messages sent by its line breaks.
    pub fn insert(&mut self, text: &str) {
        let chars: Vec<char> = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' || c == '\t' { ' ' } else { c })
            .filter(|c| !c.is_control())
            .collect();
        let count = chars.len();
        self.text.splice(self.cursor..self.cursor, chars);
        self.cursor += count;
        self.edited();
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.text.remove(self.cursor);
        }
        self.edited();
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
        self.edited();
    }

    /// Deletes the word before the cursor (and the spaces after it), like
    /// Ctrl+W in a shell.
    pub fn delete_word(&mut self) {
        let start = self.word_left();
        self.text.drain(start..self.cursor);
        self.cursor = start;
        self.edited();
    }

    /// Ctrl+U: deletes from the start of the line to the cursor.
    pub fn delete_to_start(&mut self) {
        self.text.drain(..self.cursor);
        self.cursor = 0;
        self.edited();
    }

    /// Ctrl+K: deletes from the cursor to the end of the line.
    pub fn delete_to_end(&mut self) {
        self.text.truncate(self.cursor);
        self.edited();
    }

    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
        self.completing = None;
    }

    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.len());
        self.completing = None;
    }

    pub fn word_left_move(&mut self) {
        self.cursor = self.word_left();
        self.completing = None;
    }

    pub fn word_right_move(&mut self) {
        let mut at = self.cursor;
        while at < self.text.len() && self.text.get(at).is_some_and(|c| c.is_whitespace()) {
            at += 1;
        }
        while at < self.text.len() && self.text.get(at).is_some_and(|c| !c.is_whitespace()) {
            at += 1;
        }
        self.cursor = at;
        self.completing = None;
    }

    pub fn home(&mut self) {
        self.cursor = 0;
        self.completing = None;
    }

    pub fn end(&mut self) {
        self.cursor = self.text.len();
        self.completing = None;
    }

    /// Where the word before the cursor starts.
    fn word_left(&self) -> usize {
        let mut at = self.cursor;
        while at > 0 && self.text.get(at - 1).is_some_and(|c| c.is_whitespace()) {
            at -= 1;
        }
        while at > 0 && self.text.get(at - 1).is_some_and(|c| !c.is_whitespace()) {
            at -= 1;
        }
        at
    }

    /// Takes the line for sending: it is cleared and remembered for Up.
    pub fn submit(&mut self) -> String {
        let line = self.text();
        self.text.clear();
        self.cursor = 0;
        self.edited();
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if self.history.len() > HISTORY_MAX {
                self.history.remove(0);
            }
        }
        line
    }

    /// Up: the previous line entered (the draft is kept for Down).
    pub fn history_up(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let at = match self.browsing {
            None => {
                self.draft = Some(self.text.clone());
                self.history.len() - 1
            }
            Some(at) => at.saturating_sub(1),
        };
        self.browsing = Some(at);
        self.show(self.history.get(at).map(|line| line.chars().collect()).unwrap_or_default());
    }

    /// Down: the next line entered, then back to the draft.
    pub fn history_down(&mut self) {
        let Some(at) = self.browsing else {
            return;
        };
        if at + 1 < self.history.len() {
            self.browsing = Some(at + 1);
            self.show(self.history.get(at + 1).map(|l| l.chars().collect()).unwrap_or_default());
        } else {
            self.browsing = None;
            let draft = self.draft.take().unwrap_or_default();
            self.show(draft);
        }
    }

    fn show(&mut self, text: Vec<char>) {
        self.text = text;
        self.cursor = self.text.len();
        self.completing = None;
    }

    /// Tab: completes the word before the cursor from `commands` (when it
    /// starts the line with `/`), `rooms` (after `#` or `/join `) or
    /// `nicks` (with `: ` after it at the start of the line). Tab again
    /// shows the next candidate. Returns whether anything matched.
    pub fn complete(&mut self, commands: &[&str], rooms: &[String], nicks: &[String]) -> bool {
        if let Some(completing) = self.completing.as_mut() {
            if completing.candidates.len() > 1 {
                completing.shown = (completing.shown + 1) % completing.candidates.len();
                let (start, word) =
                    (completing.start, completing.candidates[completing.shown].clone());
                self.replace_word(start, &word);
            }
            return true;
        }
        let start = self.word_left_of_cursor();
        let word: String = self.text.get(start..self.cursor).unwrap_or_default().iter().collect();
        let before: String = self.text.get(..start).unwrap_or_default().iter().collect();
        let lower = word.to_lowercase();
        let candidates: Vec<String> = if start == 0 && word.starts_with('/') {
            let mut found: Vec<String> = commands
                .iter()
                .filter(|c| c.starts_with(&lower))
                .map(|c| format!("{c} "))
                .collect();
            found.sort();
            found
        } else if let Some(prefix) = word.strip_prefix('#') {
            matching(rooms, prefix).map(|room| format!("#{room} ")).collect()
        } else if before.trim_start().to_lowercase().starts_with("/join") && start > 0 {
            matching(rooms, &word).map(|room| format!("{room} ")).collect()
        } else if word.is_empty() {
            Vec::new()
        } else if start == 0 {
            matching(nicks, &word).map(|nick| format!("{nick}: ")).collect()
        } else {
            matching(nicks, &word).map(|nick| format!("{nick} ")).collect()
        };
        let Some(first) = candidates.first().cloned() else {
            return false;
        };
        self.replace_word(start, &first);
        self.completing = Some(Completing { start, candidates, shown: 0 });
        true
    }

    /// The word before the cursor if Tab would complete it as a nick (not
    /// a command or a room), and nothing is being completed already.
    pub fn nick_word(&self) -> Option<String> {
        if self.completing.is_some() {
            return None;
        }
        let start = self.word_left_of_cursor();
        let word: String = self.text.get(start..self.cursor).unwrap_or_default().iter().collect();
        let before: String = self.text.get(..start).unwrap_or_default().iter().collect();
        let command = start == 0 && word.starts_with('/');
        let room = word.starts_with('#') || before.trim_start().to_lowercase().starts_with("/join");
        (!word.is_empty() && !command && !room).then_some(word)
    }

    /// Where the word at the cursor starts, for completion: spaces end it.
    fn word_left_of_cursor(&self) -> usize {
        let mut at = self.cursor;
        while at > 0 && self.text.get(at - 1).is_some_and(|c| !c.is_whitespace()) {
            at -= 1;
        }
        at
    }

    fn replace_word(&mut self, start: usize, word: &str) {
        let chars: Vec<char> = word.chars().collect();
        let count = chars.len();
        self.text.splice(start..self.cursor, chars);
        self.cursor = start + count;
    }
}

/// The names starting with `prefix`, compared case-insensitively, sorted.
fn matching<'a>(names: &'a [String], prefix: &str) -> impl Iterator<Item = &'a String> {
    let prefix = prefix.to_lowercase();
    let mut found: Vec<&String> =
        names.iter().filter(|name| name.to_lowercase().starts_with(&prefix)).collect();
    found.sort_by_key(|name| name.to_lowercase());
    found.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMANDS: &[&str] = &["/join", "/leave", "/me", "/msg", "/nick", "/quit"];

    fn typed(text: &str) -> Editor {
        let mut editor = Editor::default();
        editor.insert(text);
        editor
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn editing_moves_by_characters_and_words() {
        let mut e = typed("héllo wörld");
        assert_eq!(e.cursor(), 11);
        e.left();
        e.backspace();
        assert_eq!(e.text(), "héllo wörd");
        e.home();
        e.delete();
        assert_eq!(e.text(), "éllo wörd");
        e.end();
        e.delete_word();
        assert_eq!(e.text(), "éllo ");
        e.word_left_move();
        assert_eq!(e.cursor(), 0);
        e.word_right_move();
        assert_eq!(e.cursor(), 4);
        e.insert("漢字🙂");
        assert_eq!(e.text(), "éllo漢字🙂 ");
        assert_eq!(e.cursor(), 7);
    }

    #[test]
    fn a_multi_line_paste_is_one_line_and_control_characters_go() {
        let mut e = typed("one\ntwo\r\nthree\u{1b}[31m");
        assert_eq!(e.text(), "one two  three[31m");
        assert_eq!(e.submit(), "one two  three[31m");
        assert_eq!(e.text(), "");
    }

    #[test]
    fn up_and_down_walk_the_history_and_come_back_to_the_draft() {
        let mut e = Editor::default();
        for line in ["first", "second", "second", "   "] {
            e.insert(line);
            e.submit();
        }
        e.insert("draft");
        e.history_up();
        assert_eq!(e.text(), "second", "repeats are kept once, blank lines not at all");
        e.history_up();
        assert_eq!(e.text(), "first");
        e.history_up();
        assert_eq!(e.text(), "first", "stays at the oldest");
        e.history_down();
        assert_eq!(e.text(), "second");
        e.history_down();
        assert_eq!(e.text(), "draft");
        assert_eq!(e.cursor(), 5);
    }

    #[test]
    fn tab_completes_commands_rooms_and_nicks_and_cycles() {
        let rooms = names(&["lobby", "dev", "design"]);
        let nicks = names(&["alice", "Albert", "bob"]);
        let mut e = typed("/jo");
        assert!(e.complete(COMMANDS, &rooms, &nicks));
        assert_eq!(e.text(), "/join ");
        e.insert("de");
        assert!(e.complete(COMMANDS, &rooms, &nicks));
        assert_eq!(e.text(), "/join design ");
        assert!(e.complete(COMMANDS, &rooms, &nicks));
        assert_eq!(e.text(), "/join dev ", "Tab again: the next room");

        let mut e = typed("al");
        assert!(e.complete(COMMANDS, &rooms, &nicks));
        assert_eq!(e.text(), "Albert: ", "nicks in case-insensitive order");
        assert!(e.complete(COMMANDS, &rooms, &nicks));
        assert_eq!(e.text(), "alice: ");

        let mut e = typed("see #lo");
        assert!(e.complete(COMMANDS, &rooms, &nicks));
        assert_eq!(e.text(), "see #lobby ");

        let mut e = typed("thanks b");
        assert!(e.complete(COMMANDS, &rooms, &nicks));
        assert_eq!(e.text(), "thanks bob ");

        let mut e = typed("zz");
        assert!(!e.complete(COMMANDS, &rooms, &nicks));
        assert_eq!(e.text(), "zz");
    }
}
