// The playground of the endpoint window: chat with the endpoint (the reply streams in
// as server-sent events) or embed texts, through the gateway with a key of the
// endpoint, and show the last request sent as curl and Python code.

import { sentence } from "./core.js";

// The request that the code snippets show until the first one is sent.
const EXAMPLE_MESSAGES = [{ role: "user", content: "Hello!" }];
const EXAMPLE_TEXTS = ["a cat sits on the mat"];

const playground = document.getElementById("playground");
const keySelect = document.getElementById("playground-key");

if (playground && keySelect) {
  const baseUrl = playground.dataset.baseUrl;
  const model = playground.dataset.model;
  const chatForm = document.getElementById("chat-form");
  const embeddingsForm = document.getElementById("embeddings-form");
  const forms = { chat: chatForm, embeddings: embeddingsForm };
  const conversation = [];
  // What the snippets show: the last request sent, or an example before the first.
  let sentMessages = EXAMPLE_MESSAGES;
  let sentTexts = EXAMPLE_TEXTS;

  const mode = () => playground.querySelector('input[name="playground-mode"]:checked')?.value || "chat";

  function updateSnippets() {
    const key = keySelect.value;
    const snippets =
      mode() === "chat"
        ? chatSnippets(baseUrl, model, key, sentMessages)
        : embeddingSnippets(baseUrl, model, key, sentTexts);
    document.getElementById("snippet-curl").textContent = snippets.curl;
    document.getElementById("snippet-python").textContent = snippets.python;
  }

  playground.querySelectorAll('input[name="playground-mode"]').forEach((radio) => {
    radio.addEventListener("change", () => {
      Object.entries(forms).forEach(([name, form]) => {
        if (form) form.hidden = name !== mode();
      });
      updateSnippets();
    });
  });
  keySelect.addEventListener("change", updateSnippets);
  updateSnippets();

  chatForm?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = chatForm.elements.message;
    const slot = document.getElementById("chat-error");
    slot.textContent = "";
    const text = input.value.trim();
    if (!text) {
      slot.textContent = "Write a message first.";
      input.focus();
      return;
    }
    const log = document.getElementById("chat-log");
    const question = appendMessage(log, "user", text);
    const reply = appendMessage(log, "assistant", "");
    conversation.push({ role: "user", content: text });
    sentMessages = conversation.map((message) => ({ ...message }));
    updateSnippets();
    input.value = "";

    const send = chatForm.querySelector('button[type="submit"]');
    send.disabled = true;
    log.setAttribute("aria-busy", "true");
    try {
      const answer = await streamChat(baseUrl, keySelect.value, model, conversation, reply);
      conversation.push({ role: "assistant", content: answer });
      reply.dataset.done = "true";
    } catch (error) {
      // Leave the conversation as it was, and the message ready to send again.
      conversation.pop();
      question.closest(".message").remove();
      reply.closest(".message").remove();
      input.value = text;
      slot.textContent = error.message;
    } finally {
      send.disabled = false;
      log.removeAttribute("aria-busy");
    }
  });

  document.getElementById("chat-clear")?.addEventListener("click", () => {
    conversation.length = 0;
    sentMessages = EXAMPLE_MESSAGES;
    updateSnippets();
    document.getElementById("chat-log").replaceChildren();
  });

  embeddingsForm?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const slot = document.getElementById("embeddings-error");
    const result = document.getElementById("embeddings-result");
    slot.textContent = "";
    const texts = embeddingsForm.elements.texts.value
      .split("\n")
      .map((line) => line.trim())
      .filter(Boolean);
    if (texts.length === 0) {
      slot.textContent = "Write at least one text, one per line.";
      return;
    }
    sentTexts = texts;
    updateSnippets();
    const button = embeddingsForm.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const response = await gatewayRequest(baseUrl, "/embeddings", keySelect.value, { model, input: texts });
      showEmbeddings(result, texts, (await response.json()).data);
    } catch (error) {
      slot.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });
}

function appendMessage(log, role, text) {
  const message = document.createElement("div");
  message.className = `message message-${role}`;
  const roleLabel = document.createElement("span");
  roleLabel.className = "message-role";
  roleLabel.textContent = role === "user" ? "You" : "Endpoint";
  const body = document.createElement("p");
  body.className = "message-text";
  body.textContent = text;
  message.append(roleLabel, body);
  log.append(message);
  return body;
}

/** Send a request through the gateway; a failure raises an Error with a plain message. */
async function gatewayRequest(baseUrl, path, key, body) {
  let response;
  try {
    response = await fetch(baseUrl + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });
  } catch {
    throw new Error("The endpoint did not respond. Check that Berth is running and try again.");
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    const message = sentence(data?.error?.message) || `The endpoint responded with status ${response.status}.`;
    throw new Error(`${message} (status ${response.status})`);
  }
  return response;
}

/**
 * Stream a chat reply into `target`, one server-sent event at a time, and return the
 * whole reply. `target.dataset.chunks` counts the pieces that arrived.
 */
async function streamChat(baseUrl, key, model, messages, target) {
  const response = await gatewayRequest(baseUrl, "/chat/completions", key, { model, messages, stream: true });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let reply = "";
  let chunks = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(sentence(chunk.error.message));
        const piece = chunk.choices?.[0]?.delta?.content;
        if (piece) {
          reply += piece;
          chunks += 1;
          target.textContent = reply;
          target.dataset.chunks = String(chunks);
        }
      }
    }
  }
  return reply;
}

function showEmbeddings(result, texts, vectors) {
  const table = document.createElement("table");
  table.className = "embeddings-table";
  const caption = table.createCaption();
  const dimensions = vectors[0]?.embedding.length || 0;
  caption.textContent = `${vectors.length} vector${vectors.length === 1 ? "" : "s"} of ${dimensions} dimensions`;
  const head = table.createTHead().insertRow();
  ["Text", "First values"].forEach((title) => {
    const cell = document.createElement("th");
    cell.scope = "col";
    cell.textContent = title;
    head.append(cell);
  });
  const body = table.createTBody();
  vectors.forEach((vector, index) => {
    const row = body.insertRow();
    row.insertCell().textContent = texts[index];
    const values = vector.embedding.slice(0, 4).map((number) => number.toFixed(4));
    row.insertCell().textContent = `${values.join(", ")}${dimensions > 4 ? ", …" : ""}`;
  });
  result.replaceChildren(table);
}

// Ready-made code for the endpoint, the chosen key and the request.

// Put JSON between single quotes for a POSIX shell: each ' becomes '\''.
function shellQuoted(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

// JSON strings, lists and objects of strings read the same in Python.
function pythonLiteral(value) {
  return JSON.stringify(value);
}

function chatSnippets(baseUrl, model, key, messages) {
  const body = JSON.stringify({ model, messages, stream: true });
  return {
    curl: [
      `curl -sN ${baseUrl}/chat/completions \\`,
      `  -H "Authorization: Bearer ${key}" \\`,
      `  -H "Content-Type: application/json" \\`,
      `  -d ${shellQuoted(body)}`,
    ].join("\n"),
    python: [
      "from openai import OpenAI",
      "",
      ...clientLines(baseUrl, key),
      "stream = client.chat.completions.create(",
      `    model="${model}",`,
      `    messages=${pythonLiteral(messages)},`,
      "    stream=True,",
      ")",
      "for chunk in stream:",
      '    print(chunk.choices[0].delta.content or "", end="", flush=True)',
      "print()",
    ].join("\n"),
  };
}

function clientLines(baseUrl, key) {
  return ["client = OpenAI(", `    base_url="${baseUrl}",`, `    api_key="${key}",`, ")"];
}

function embeddingSnippets(baseUrl, model, key, texts) {
  const body = JSON.stringify({ model, input: texts });
  return {
    curl: [
      `curl -s ${baseUrl}/embeddings \\`,
      `  -H "Authorization: Bearer ${key}" \\`,
      `  -H "Content-Type: application/json" \\`,
      `  -d ${shellQuoted(body)}`,
    ].join("\n"),
    python: [
      "from openai import OpenAI",
      "",
      ...clientLines(baseUrl, key),
      `result = client.embeddings.create(model="${model}", input=${pythonLiteral(texts)})`,
      "print(len(result.data[0].embedding), result.data[0].embedding[:4])",
    ].join("\n"),
  };
}
