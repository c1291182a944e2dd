// @chorus/client: live comments from Chorus, with resume, credit flow control and exactly-once posts.

export { ChorusClient, type ClientEvents } from "./client.js";
export { ChorusError } from "./errors.js";
export { memoryStorage } from "./outbox.js";
export { Subscription, type SubscriptionEvents } from "./subscription.js";
export type {
  Accepted,
  ClientOptions,
  Comment,
  Epoch,
  EventFrame,
  Gap,
  OutboxEntry,
  Position,
  PostOptions,
  ReactionCounts,
  State,
  StorageLike,
  SubscribeOptions,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";
