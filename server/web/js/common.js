// Helpers shared by the chat page and the stats page.

// A byte count for people: 512 B, 48.2 KB, 8.0 MB.
export function formatSize(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} KB`;
  if (bytes < 1e9) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${(bytes / 1e9).toFixed(1)} GB`;
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
