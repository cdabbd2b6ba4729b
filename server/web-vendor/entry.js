// What the page imports from /js/yjs.js (see scripts/build-vendor).
export * as Y from 'yjs';
export { WebsocketProvider } from 'y-websocket';
