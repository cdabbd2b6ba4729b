//! Shared documents' rules: who may read and change a room's documents,
//! and each room's document list (created, renamed, edited, deleted),
//! kept like its topic: stored, told to the other cores, shown live to the
//! room. The documents' content (the CRDT) is the driver's: it asks
//! [`Chat::doc_access`] who may open one and [`Chat::handle_doc_edit`]
//! before taking an edit.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Asker, Chat};
use crate::id::SessionId;
use crate::{
    CommandError, DOC_EDITS_EVERY, DocAction, DocEntry, Event, MemberId, Nick, Output, Record,
    RoomId, RoomName, SessionToken, Shared, Timestamp,
};

/// The longest document title, in characters.
const TITLE_MAX_CHARS: usize = 100;

/// The longest name made from a title (room-name rules; room for `-NN`).
const NAME_MAX_CHARS: usize = 48;

/// What a session may do with a room's documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocAccess {
    /// Nothing: it is not in the room (or its identity does not allow it).
    Denied,
    /// Read them: the room's documents are read-only
    /// ([`ChatConfig::read_only_docs`](crate::ChatConfig::read_only_docs)).
    Read,
    /// Read and change them.
    Write,
}

impl Chat {
    /// What the session of `token` may do with `room`'s documents.
    pub fn doc_access(&self, token: &SessionToken, room: &RoomName) -> DocAccess {
        if !self.may_read(token, room) {
            DocAccess::Denied
        } else if self.read_only_docs(room) {
            DocAccess::Read
        } else {
            DocAccess::Write
        }
    }

    /// The session of `token` changes document `doc` of `room`: the driver
    /// asks before it takes an edit (one that changes something). A name
    /// not in the room's list yet is added to it (titled as named); an
    /// edit is told to the room (and stored) at most every
    /// [`DOC_EDITS_EVERY`] per document, saying who edited last; who
    /// joins meanwhile gets the list as it is.
    ///
    /// # Errors
    /// The session may not change the room's documents (`NotInRoom`,
    /// `Forbidden`), or the name is new and the room holds
    /// [`ChatConfig::max_docs_per_room`](crate::ChatConfig::max_docs_per_room)
    /// documents (`DocLimit`). The driver refuses the edit.
    pub fn handle_doc_edit(
        &mut self,
        now: Timestamp,
        token: &SessionToken,
        room: &RoomName,
        doc: &RoomName,
    ) -> Result<(), CommandError> {
        self.check_doc_write(token, room)?;
        let (Some(&sid), Some(&room_id)) = (self.tokens.get(token), self.room_ids.get(room)) else {
            return Err(CommandError::NotInRoom(room.clone()));
        };
        let Some(by) = self.sessions.get(&sid).map(|session| session.nick.clone()) else {
            return Err(CommandError::NotInRoom(room.clone()));
        };
        let max = self.config.max_docs_per_room;
        let Some(held) = self.rooms.get_mut(&room_id) else {
            return Err(CommandError::NotInRoom(room.clone()));
        };
        let full = held.docs.len() >= max;
        let (action, entry) = match held.docs.get_mut(doc) {
            Some((entry, announced)) => {
                entry.edited_by = by.clone();
                entry.edited_at = now;
                // Told (and stored) at most every DOC_EDITS_EVERY, whoever
                // types: with many typing at once, an edit is not a
                // broadcast to the room and a commit each.
                let quiet = announced.is_some_and(|at| {
                    u128::from(now.millis_since(at)) < DOC_EDITS_EVERY.as_millis()
                });
                if quiet {
                    return Ok(());
                }
                *announced = Some(now);
                (DocAction::Edited, entry.clone())
            }
            None if full => {
                return Err(CommandError::DocLimit { room: room.clone(), max });
            }
            None => {
                let title = Arc::from(doc.as_str());
                let entry =
                    DocEntry { name: doc.clone(), title, edited_by: by.clone(), edited_at: now };
                held.docs.insert(doc.clone(), (entry.clone(), Some(now)));
                (DocAction::Created, entry)
            }
        };
        self.doc_changed(sid, room_id, None, action, entry, by);
        Ok(())
    }

    /// `doc_create`: a new document titled `title`, named after it.
    pub(super) fn doc_create(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
        title: &str,
    ) -> Result<(), CommandError> {
        let (room_id, name, by) = self.doc_room(now, asker, room)?;
        let title = self.doc_title(room_id, title, None)?;
        let max = self.config.max_docs_per_room;
        let Some(held) = self.rooms.get_mut(&room_id) else {
            return Err(CommandError::NotInRoom(name));
        };
        if held.docs.len() >= max {
            return Err(CommandError::DocLimit { room: name, max });
        }
        let doc = unique_name(&held.docs, &title);
        let entry = DocEntry { name: doc.clone(), title, edited_by: by.clone(), edited_at: now };
        held.docs.insert(doc, (entry.clone(), Some(now)));
        self.doc_changed(asker.session, room_id, Some(asker), DocAction::Created, entry, by);
        Ok(())
    }

    /// `doc_rename`: document `doc` gets another title (its name, what it
    /// is opened by, stays).
    pub(super) fn doc_rename(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
        doc: &str,
        title: &str,
    ) -> Result<(), CommandError> {
        let (room_id, name, by) = self.doc_room(now, asker, room)?;
        let doc = self.listed_doc(room_id, &name, doc)?;
        let title = self.doc_title(room_id, title, Some(&doc))?;
        let Some((entry, _)) =
            self.rooms.get_mut(&room_id).and_then(|held| held.docs.get_mut(&doc))
        else {
            return Err(CommandError::NoSuchDoc { room: name, doc: doc.to_string() });
        };
        entry.title = title;
        let entry = entry.clone();
        self.doc_changed(asker.session, room_id, Some(asker), DocAction::Renamed, entry, by);
        Ok(())
    }

    /// `doc_delete`: document `doc` goes, with its content.
    pub(super) fn doc_delete(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
        doc: &str,
    ) -> Result<(), CommandError> {
        let (room_id, name, by) = self.doc_room(now, asker, room)?;
        let doc = self.listed_doc(room_id, &name, doc)?;
        let Some((entry, _)) = self.rooms.get_mut(&room_id).and_then(|held| held.docs.remove(&doc))
        else {
            return Err(CommandError::NoSuchDoc { room: name, doc: doc.to_string() });
        };
        self.outputs.push_back(Output::DropDoc { room: name, doc, content: true });
        self.doc_changed(asker.session, room_id, Some(asker), DocAction::Deleted, entry, by);
        Ok(())
    }

    /// `doc_versions`: the driver lists the document's versions for a
    /// member who may read it.
    pub(super) fn doc_versions(
        &mut self,
        asker: &Asker,
        room: &str,
        doc: &str,
    ) -> Result<(), CommandError> {
        let (room_id, name) = self.joined_room(asker.session, room)?;
        let doc = self.listed_doc(room_id, &name, doc)?;
        let (member, id) = (asker.member, asker.id.clone());
        self.outputs.push_back(Output::ListVersions { member, id, room: name, doc });
        Ok(())
    }

    /// `doc_restore`: the driver makes the document as it was at
    /// `version`, for a member who may change it, and says how it went
    /// ([`Chat::handle_doc_restored`]).
    pub(super) fn doc_restore(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
        doc: &str,
        version: u64,
    ) -> Result<(), CommandError> {
        let (room_id, name, _) = self.doc_room(now, asker, room)?;
        let doc = self.listed_doc(room_id, &name, doc)?;
        let (member, id) = (asker.member, asker.id.clone());
        self.outputs.push_back(Output::RestoreDoc { member, id, room: name, doc, version });
        Ok(())
    }

    /// The driver made document `doc` of `room` as it was at a version,
    /// for `member` ([`Output::RestoreDoc`]), or says why not: the room
    /// is told (`restored`), or the member gets the error, with `id`.
    pub fn handle_doc_restored(
        &mut self,
        now: Timestamp,
        member: MemberId,
        id: Option<Arc<str>>,
        room: &RoomName,
        doc: &RoomName,
        result: Result<(), CommandError>,
    ) {
        let session = self.conns.get(&member).and_then(|conn| conn.session);
        let asker = session.map(|session| Asker { member, session, id: id.clone() });
        let found = asker.as_ref().and_then(|asker| {
            let by = self.sessions.get(&asker.session)?.nick.clone();
            let room_id = self.room_ids.get(room).copied()?;
            Some((by, room_id))
        });
        let (Some(asker), Some((by, room_id))) = (asker, found) else {
            return;
        };
        if let Err(error) = result {
            self.reply(member, Event::Error { id, error });
            return;
        }
        let Some((entry, announced)) =
            self.rooms.get_mut(&room_id).and_then(|held| held.docs.get_mut(doc))
        else {
            return;
        };
        entry.edited_by = by.clone();
        entry.edited_at = now;
        *announced = Some(now);
        let entry = entry.clone();
        self.doc_changed(asker.session, room_id, Some(&asker), DocAction::Restored, entry, by);
    }

    /// Another core's change to `room_id`'s document list: applied, and
    /// shown to the room.
    pub(super) fn remote_doc(
        &mut self,
        room_id: RoomId,
        action: DocAction,
        entry: DocEntry,
        by: Nick,
    ) {
        let Some(held) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let room = held.name.clone();
        if action == DocAction::Deleted {
            held.docs.remove(&entry.name);
            let doc = entry.name.clone();
            self.outputs.push_back(Output::DropDoc { room: room.clone(), doc, content: false });
        } else {
            held.docs.insert(entry.name.clone(), (entry.clone(), None));
        }
        let to = self.recipients(room_id);
        self.deliver(to, Event::Doc { id: None, room, action, doc: entry, by });
    }

    /// The room's documents, in name order (for `joined`).
    pub(super) fn doc_list(&self, room_id: RoomId) -> Vec<DocEntry> {
        self.rooms
            .get(&room_id)
            .map(|held| held.docs.values().map(|(entry, _)| entry.clone()).collect())
            .unwrap_or_default()
    }

    /// A change to a room's list: stored, told to the other cores, and to
    /// everyone in the room (the asker with its request id).
    fn doc_changed(
        &mut self,
        sid: SessionId,
        room_id: RoomId,
        asker: Option<&Asker>,
        action: DocAction,
        entry: DocEntry,
        by: Nick,
    ) {
        let Some(room) = self.rooms.get(&room_id).map(|held| held.name.clone()) else {
            return;
        };
        let deleted = action == DocAction::Deleted;
        let record = Record::Doc { room: room.clone(), doc: entry.clone(), deleted };
        self.outputs.push_back(Output::Persist(record));
        self.share(sid, room_id, Shared::Doc { action, doc: entry.clone(), by: by.clone() });
        let to = self.recipients(room_id);
        let event =
            |id| Event::Doc { id, room: room.clone(), action, doc: entry.clone(), by: by.clone() };
        match asker {
            None => self.deliver(to, event(None)),
            Some(asker) => {
                let others: Arc<[MemberId]> =
                    to.iter().copied().filter(|&m| m != asker.member).collect();
                self.deliver(others, event(None));
                self.reply(asker.member, event(asker.id.clone()));
            }
        }
    }

    /// The joined room of a list command, if the asker may change its
    /// documents and storage takes changes; with the asker's nick.
    fn doc_room(
        &mut self,
        now: Timestamp,
        asker: &Asker,
        room: &str,
    ) -> Result<(RoomId, RoomName, Nick), CommandError> {
        let (room_id, name) = self.joined_room(asker.session, room)?;
        if self.read_only_docs(&name) {
            return Err(read_only(&name));
        }
        self.check_store(now)?;
        self.take_message_token(now, asker.session)?;
        let Some(by) = self.sessions.get(&asker.session).map(|session| session.nick.clone()) else {
            return Err(CommandError::NotInRoom(name));
        };
        Ok((room_id, name, by))
    }

    /// Document `doc` of the room, if it is in its list.
    fn listed_doc(
        &self,
        room_id: RoomId,
        room: &RoomName,
        doc: &str,
    ) -> Result<RoomName, CommandError> {
        let missing = || CommandError::NoSuchDoc { room: room.clone(), doc: doc.to_owned() };
        let name = RoomName::parse(doc).map_err(|_| missing())?;
        let listed = self.rooms.get(&room_id).is_some_and(|held| held.docs.contains_key(&name));
        listed.then_some(name).ok_or_else(missing)
    }

    /// `title` trimmed, if it is one line of at most [`TITLE_MAX_CHARS`]
    /// that no other document of the room (but `renaming`) has, whatever
    /// the case.
    fn doc_title(
        &self,
        room_id: RoomId,
        title: &str,
        renaming: Option<&RoomName>,
    ) -> Result<Arc<str>, CommandError> {
        let title = title.trim();
        if title.is_empty()
            || title.chars().nth(TITLE_MAX_CHARS).is_some()
            || title.chars().any(char::is_control)
        {
            let why = format!("a document title is one line of 1 to {TITLE_MAX_CHARS} characters");
            return Err(CommandError::BadDocTitle(why));
        }
        let lower = title.to_lowercase();
        let taken = self.rooms.get(&room_id).is_some_and(|held| {
            held.docs.values().any(|(entry, _)| {
                Some(&entry.name) != renaming && entry.title.to_lowercase() == lower
            })
        });
        if taken {
            return Err(CommandError::BadDocTitle(format!("a document is titled {title} already")));
        }
        Ok(Arc::from(title))
    }

    pub(super) fn read_only_docs(&self, room: &RoomName) -> bool {
        self.config.read_only_docs.iter().any(|pattern| pattern.matches(room))
    }

    fn check_doc_write(&self, token: &SessionToken, room: &RoomName) -> Result<(), CommandError> {
        match self.doc_access(token, room) {
            DocAccess::Denied => Err(CommandError::NotInRoom(room.clone())),
            DocAccess::Read => Err(read_only(room)),
            DocAccess::Write => Ok(()),
        }
    }
}

fn read_only(room: &RoomName) -> CommandError {
    CommandError::Forbidden(format!("the documents of {room} are read-only"))
}

/// A name for a document titled `title`: its letters and digits in lower
/// case, runs of anything else as one `-`, and `-2`, `-3`... if the room
/// has that name already.
fn unique_name<V>(docs: &BTreeMap<RoomName, V>, title: &str) -> RoomName {
    let mut base = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            base.push(c);
        } else if !base.ends_with('-') && !base.is_empty() {
            base.push('-');
        }
        if base.len() >= NAME_MAX_CHARS {
            break;
        }
    }
    let base = match base.trim_end_matches('-') {
        "" => "doc",
        trimmed => trimmed,
    };
    // At most 48 + 11 characters of `a`-`z`, `0`-`9` and `-`: a room name.
    let mut n = 1u64;
    loop {
        let name = match n {
            1 => base.to_owned(),
            n => format!("{base}-{n}"),
        };
        if let Ok(name) = RoomName::parse(&name)
            && !docs.contains_key(&name)
        {
            return name;
        }
        n += 1;
    }
}
