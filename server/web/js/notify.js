// Desktop notifications for mentions and direct messages while the page is
// in the background.

import { $ } from './common.js';
import { state } from './state.js';

export function notify(title, body) {
  if (!document.hidden && document.hasFocus()) {
    return;
  }
  if (typeof Notification === 'undefined' || Notification.permission !== 'granted') {
    return;
  }
  try {
    new Notification(title, { body: body.slice(0, 200), tag: 'chat' });
    state.notified += 1;
    document.body.dataset.notified = String(state.notified);
  } catch (_) {
    // Some browsers only notify from a service worker: the badge still shows.
  }
}

export function askForNotifications() {
  if (typeof Notification !== 'undefined' && Notification.permission === 'default') {
    Notification.requestPermission().finally(renderNotifyButton);
  }
}

export function renderNotifyButton() {
  $('notify').hidden = typeof Notification === 'undefined' || Notification.permission !== 'default';
}
