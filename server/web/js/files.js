// Files: attachments shown in messages (images inline, media players,
// downloads), and the files being sent with their progress. The upload
// protocol itself is the session's (session.js); reading the file is the
// connection's (connection.js).

import { $, formatSize } from './common.js';
import { state } from './state.js';
import { addLine } from './views.js';

const INLINE_IMAGES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

// The file's bytes as an object URL, fetched once with the session token
// (files are only for those in the room, so a plain <img src> cannot work).
// Anything but media gets a neutral type: a page's own origin must never
// render an uploaded document.
function fileUrl(attachment) {
  let url = state.files.get(attachment.id);
  if (!url) {
    const session = state.connection?.session.token;
    url = fetch(`/files/${attachment.id}`, { headers: { Authorization: `Bearer ${session}` } })
      .then((response) => {
        if (!response.ok) {
          throw new Error(`the server answered ${response.status}`);
        }
        return response.blob();
      })
      .then((blob) => {
        const media = INLINE_IMAGES.includes(attachment.mime) || /^(audio|video)\//.test(attachment.mime);
        const typed = new Blob([blob], { type: media ? attachment.mime : 'application/octet-stream' });
        return URL.createObjectURL(typed);
      });
    url.catch(() => state.files.delete(attachment.id));
    state.files.set(attachment.id, url);
  }
  return url;
}

/** How a file is shown in its message; `resized` is called when media loaded (it may have grown). */
export function attachmentElement(attachment, resized = () => {}) {
  const box = document.createElement('div');
  box.className = 'attachment';
  const label = `${attachment.name} (${formatSize(attachment.size)})`;
  const failed = (err) => {
    const note = document.createElement('span');
    note.className = 'error';
    note.textContent = ` ${attachment.name} could not be loaded: ${err.message}`;
    box.append(note);
  };
  if (INLINE_IMAGES.includes(attachment.mime)) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'thumb';
    button.setAttribute('aria-label', `${label}: show larger`);
    const img = document.createElement('img');
    img.alt = attachment.name;
    // Its height is reserved (style.css): the list does not jump when it loads.
    img.addEventListener('load', resized);
    img.dataset.file = attachment.id;
    button.append(img);
    button.addEventListener('click', () => {
      $('viewer-image').src = img.src;
      $('viewer-image').alt = attachment.name;
      $('viewer-caption').textContent = label;
      $('viewer').showModal();
    });
    box.append(button);
    fileUrl(attachment).then((url) => { img.src = url; }, failed);
  } else if (/^(audio|video)\//.test(attachment.mime)) {
    const player = document.createElement(attachment.mime.startsWith('audio/') ? 'audio' : 'video');
    player.controls = true;
    player.addEventListener('loadedmetadata', resized);
    player.setAttribute('aria-label', label);
    player.dataset.file = attachment.id;
    box.append(player);
    fileUrl(attachment).then((url) => { player.src = url; }, failed);
  }
  const link = document.createElement('a');
  link.className = 'download';
  link.href = '#';
  link.textContent = `⬇ ${label}`;
  link.dataset.file = attachment.id;
  link.addEventListener('click', (event) => {
    if (link.download) {
      return; // ready: the browser saves it
    }
    event.preventDefault();
    fileUrl(attachment).then((url) => {
      link.href = url;
      link.download = attachment.name;
      link.click();
    }, failed);
  });
  box.append(link);
  return box;
}

/** A file the user picked, pasted or dropped: checked, then sent to the current room. */
export function queueUpload(file) {
  const room = state.current;
  if (!room || room.startsWith('@')) {
    addLine(room || [...state.rooms.keys()][0], { kind: 'error', text: 'files go to rooms: switch to a room first' });
    return;
  }
  const max = state.limits.max_upload_bytes || 0;
  if (max === 0) {
    addLine(room, { kind: 'error', text: 'this server takes no files' });
    return;
  }
  if (file.size > max) {
    addLine(room, {
      kind: 'error',
      text: `${file.name} is ${formatSize(file.size)}; this server takes files up to ${formatSize(max)}`,
    });
    return;
  }
  if (file.size === 0) {
    addLine(room, { kind: 'error', text: `${file.name} is empty` });
    return;
  }
  const row = document.createElement('li');
  const name = document.createElement('span');
  name.textContent = `${file.name} (${formatSize(file.size)}) `;
  const bar = document.createElement('progress');
  bar.max = file.size;
  bar.value = 0;
  bar.setAttribute('aria-label', `sending ${file.name}`);
  row.append(name, bar);
  $('uploads').append(row);
  // Registered before the session may report on it.
  const id = state.connection.nextFile;
  state.uploads.set(id, { room, name: file.name, row, bar });
  state.connection.upload(file, room);
}

/** How far a file got. */
export function uploadProgress(file, sent) {
  const upload = state.uploads.get(file);
  if (upload) {
    upload.bar.value = sent;
  }
}

/** A file refused for now: it waits, then goes again. */
export function uploadWaiting(file) {
  state.uploads.get(file)?.bar.removeAttribute('value'); // indeterminate while it waits
}

/** A file's upload ended: delivered (`error` null) or not. */
export function uploadEnded(file, error) {
  const upload = state.uploads.get(file);
  state.uploads.delete(file);
  if (upload) {
    upload.row.remove();
    if (error) {
      addLine(upload.room, { kind: 'error', text: `not sent: ${error}` });
    }
  }
}
