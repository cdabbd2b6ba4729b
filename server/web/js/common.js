// Helpers shared by the chat page and the stats page.

// A byte count for people, in the binary units limits are set in:
// 512 B, 48.2 KiB, 8 MiB.
export function formatSize(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const shown = unit === 0 ? String(value) : value.toFixed(1).replace(/\.0$/, '');
  return `${shown} ${units[unit]}`;
}

// A stable hue for a nick (FNV-1a), so each person keeps one colour.
export function nickHue(nick) {
  let hash = 0x811c9dc5;
  for (const char of nick.toLowerCase()) {
    hash ^= char.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b) >>> 0;
  hash ^= hash >>> 13;
  // (`^` makes a signed number: the hue CSS took from it, in 0..360.)
  return ((hash % 360) + 360) % 360;
}

// A server frame from a WebSocket message, or null if it is not JSON.
export function parseFrame(data) {
  try {
    return JSON.parse(data);
  } catch (_) {
    return null;
  }
}

export const $ = (id) => document.getElementById(id);
