// What the page imports from /js/yjs.js (see scripts/build-yjs).
export * as Y from 'yjs';
export { WebsocketProvider } from 'y-websocket';
