/**
 * @herald/client: framework-free core.
 *
 * - {@link HeraldClient}: subscribe to a Herald stream, over SSE or a WebSocket (browser and Node).
 * - Pure building blocks, exported for reuse and tests: backoff, URL building,
 *   the status machine, event-id tracking, the reconnect policy and tab-sharing keys.
 */
export {
  HeraldClient,
  DEFAULT_HEARTBEAT_INTERVAL,
  DEFAULT_LIVENESS_TIMEOUT,
  LIVENESS_HEARTBEATS,
  isServerRendering,
  type HeraldClientOptions,
  type TransportOption,
} from './client.js';
export {
  Backoff,
  backoffCeiling,
  computeBackoff,
  resolveBackoffOptions,
  DEFAULT_BACKOFF,
  type BackoffOptions,
  type ResolvedBackoffOptions,
} from './backoff.js';
export { buildSubscribeUrl, joinUrl, normalizeChannels, withEnvelope, DEFAULT_SSE_PATH, type SubscribeUrlParams } from './url.js';
export { SseParser, unwrapEnvelope, envelopeRaw, type Envelope, type SseMessage } from './sse-parser.js';
export { FetchSseDriver, canFetchStream, type FetchLike, type FetchStreamConfig } from './fetch-stream.js';
export { parseRetryAfter } from './retry-after.js';
export { nextStatus, StatusMachine, type StatusInput } from './status.js';
export { EventIdTracker } from './event-id.js';
export {
  decideOnDisconnected,
  decideOnHttpStatus,
  reconnectAdvice,
  STOP_REASONS,
  TOKEN_REASONS,
  type DisconnectPolicy,
  type PolicyAction,
  type PolicyContext,
} from './policy.js';
export {
  Connection,
  SseConnection,
  SseDriver,
  parseData,
  deliverSse,
  sseDriver,
  type StreamFailure,
  type TokenSource,
  type Transport,
  type TransportSink,
  type ConnectionConfig,
  type StreamCallbacks,
  type StreamDriver,
  type StreamHandle,
} from './connection.js';
export {
  AutoConnection,
  WebSocketConnection,
  WebSocketDriver,
  buildWebSocketUrl,
  getGlobalWebSocket,
  toWebSocketUrl,
  DEFAULT_WS_PATH,
  type WebSocketConnectionConfig,
  type WebSocketConstructor,
  type WebSocketDriverConfig,
  type WebSocketEventLike,
  type WebSocketLike,
} from './websocket.js';
export {
  SharedTransport,
  deriveShareKey,
  detectSharingSupport,
  defaultShareConnection,
  type BroadcastChannelConstructor,
  type BroadcastChannelLike,
  type LockManagerLike,
  type ShareKeyInput,
  type ShareMessage,
  type SharingSupport,
} from './sharing.js';
export {
  getGlobalEventSource,
  loadEventSourcePackage,
  type EventSourceConstructor,
  type EventSourceLike,
  type EventSourceMessageLike,
} from './eventsource.js';
export {
  HeraldError,
  HeraldErrorCodes,
  OutcomeUnknownError,
  HeraldConnectionError,
  HeraldAuthError,
  type ConnectionErrorKind,
  type HeraldErrorBody,
  type HeraldErrorCode,
} from './errors.js';
export {
  SYSTEM_EVENTS,
  type AllEvents,
  type AnyHeraldEvent,
  type ClientState,
  type ConnectedData,
  type ConnectionStatus,
  type DisconnectedData,
  type DisconnectReason,
  type EventMap,
  type HeartbeatData,
  type HeraldEvent,
  type HeraldHandler,
  type HeraldSystemEvents,
  type PresenceData,
  type ReconnectAdvice,
  type ResetData,
  type TransportKind,
} from './types.js';
