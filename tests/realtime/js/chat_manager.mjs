// Seed 001's ChatManager (shared/seeds/001_…), as the seed gives it, with only its base URLs changed
// and one authentication header / token parameter added. The harness at the bottom drives it and
// prints one JSON line per thing that happened, for the Python test to read.
import { Socket } from "phoenix";
import WebSocket from "ws";
import readline from "node:readline";

globalThis.WebSocket = WebSocket; // Node 20 has no WebSocket of its own; browsers do.

const BASE = process.env.BASE_URL;          // e.g. http://127.0.0.1:18600
const WS = process.env.SOCKET_URL;          // e.g. ws://127.0.0.1:18600/socket
const TOKEN = process.env.TOKEN;            // an API key or a user's JWT
const AUTH = { Authorization: `Bearer ${TOKEN}` };

const emit = (event, data = {}) => process.stdout.write(JSON.stringify({ event, ...data }) + "\n");

class ChatManager {
  constructor(businessId, userId) {
    this.businessId = businessId;
    this.userId = userId;
    this.currentSession = null;
    this.socket = null;
    this.channel = null;
  }

  async initialize() {
    this.currentSession = await this.getActiveSession();
    if (this.currentSession) {
      await this.loadSessionMessages(this.currentSession.sessionId);
    }
    this.connectWebSocket();
  }

  async getActiveSession() {
    const response = await fetch(
      `${BASE}/agent/api/sessions/business/${this.businessId}/user/${this.userId}/active`,
      { headers: AUTH }
    );
    if (response.ok) {
      return await response.json();
    }
    return null;
  }

  async loadSessionMessages(sessionId) {
    const response = await fetch(`${BASE}/agent/api/sessions/${sessionId}/messages?limit=100`, { headers: AUTH });
    const messages = await response.json();
    messages.forEach(msg => this.displayMessage(msg));
  }

  connectWebSocket() {
    this.socket = new Socket(WS, {
      params: {
        businessId: this.businessId,
        userId: this.userId,
        token: TOKEN
      },
      reconnectAfterMs: () => 200,
      rejoinAfterMs: () => 200
    });

    this.socket.connect();

    this.channel = this.socket.channel(`messages:${this.businessId}`, {
      userId: this.userId
    });

    this.channel.join()
      .receive("ok", () => {
        emit("joined");
      })
      .receive("error", (error) => {
        emit("join_error", { error });
      });

    this.channel.on("new_message", (payload) => {
      this.handleStreamingMessage(payload);
    });

    this.channel.on("ai_function_call", (payload) => {
      this.handleFunctionCall(payload);
    });
  }

  async sendMessage(message) {
    this.channel.push("new_message", {
      businessId: this.businessId,
      userId: this.userId,
      message: message,
      sessionId: this.currentSession?.sessionId,
      timestamp: new Date().toISOString()
    }).receive("ok", (response) => emit("pushed", { response }))
      .receive("error", (response) => emit("push_error", { response }));

    this.displayMessage({
      messageId: `msg_${Date.now()}`,
      content: message,
      type: 'user',
      timestamp: new Date().toISOString()
    });
  }

  handleStreamingMessage(payload) {
    if (payload.streaming && payload.streaming.isChunk) {
      this.updateStreamingMessage(payload);
    } else {
      this.displayMessage({
        messageId: payload.responseId,
        content: payload.message,
        type: 'agent',
        timestamp: payload.timestamp,
        actions: payload.actions
      });
    }
    if (payload.sessionId && !this.currentSession) {
      this.currentSession = { sessionId: payload.sessionId };
    }
  }

  displayMessage(message) {
    emit("display", { message });
  }

  updateStreamingMessage(payload) {
    emit("chunk", { message: payload.message, responseId: payload.responseId });
  }

  handleFunctionCall(payload) {
    emit("function_call", { functionData: payload.functionData });
  }
}

// Harness: commands arrive one per line on stdin ("send <text>", "session", "quit").
const chat = new ChatManager(process.env.BUSINESS_ID || "B0100001", process.env.USER_ID || "user_123");
await chat.initialize();
emit("initialized", { session: chat.currentSession });
chat.socket.onOpen(() => emit("open"));
chat.socket.onClose(() => emit("closed"));

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const [command, ...rest] = line.split(" ");
  if (command === "send") await chat.sendMessage(rest.join(" "));
  if (command === "session") emit("session", { session: chat.currentSession });
  if (command === "quit") break;
}
chat.socket.disconnect();
process.exit(0);
