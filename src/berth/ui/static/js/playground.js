// The playground of the endpoint window. It chats with the endpoint, completes a plain
// prompt or embeds texts through the gateway with a key of the endpoint. Chat and
// completion replies stream in as server-sent events. The last request sent is shown as
// curl and Python code.

import { sentence } from "./core.js";

// The request that the code snippets show until the first one is sent.
const EXAMPLE_MESSAGES = [{ role: "user", content: "Hello!" }];
const EXAMPLE_PROMPT = "Once upon a time";
const EXAMPLE_TEXTS = ["a cat sits on the mat"];

// Error codes of the runtime's 400 responses that the playground acts on.
const NO_CHAT_TEMPLATE = "no_chat_template";
const CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded";

// The API's range for temperature. The max of max tokens comes from the input's max attribute.
const MIN_TEMPERATURE = 0;
const MAX_TEMPERATURE = 2;

const playground = document.getElementById("playground");
const keySelect = document.getElementById("playground-key");

if (playground && keySelect) {
  const baseUrl = playground.dataset.baseUrl;
  const model = playground.dataset.model;
  const chatForm = document.getElementById("chat-form");
  const completionForm = document.getElementById("completion-form");
  const embeddingsForm = document.getElementById("embeddings-form");
  const settings = document.getElementById("generation-settings");
  const notice = document.getElementById("playground-notice");
  const trimButton = document.getElementById("chat-trim");
  const forms = { chat: chatForm, completion: completionForm, embeddings: embeddingsForm };
  const conversation = [];
  // The sessionStorage key that marks, for this browser tab, a model without a chat template.
  const noTemplateKey = `berth.playground.no-chat-template.${model}`;
  // What the snippets show: the last request sent, or an example before the first.
  let sentChat = { messages: EXAMPLE_MESSAGES, options: {} };
  let sentCompletion = { prompt: EXAMPLE_PROMPT, options: {} };
  let sentTexts = EXAMPLE_TEXTS;

  const mode = () => playground.querySelector('input[name="playground-mode"]:checked')?.value || "chat";

  function updateSnippets() {
    const key = keySelect.value;
    let snippets;
    if (mode() === "chat") {
      snippets = chatSnippets(baseUrl, model, key, sentChat.messages, sentChat.options);
    } else if (mode() === "completion") {
      snippets = completionSnippets(baseUrl, model, key, sentCompletion.prompt, sentCompletion.options);
    } else {
      snippets = embeddingSnippets(baseUrl, model, key, sentTexts);
    }
    document.getElementById("snippet-curl").textContent = snippets.curl;
    document.getElementById("snippet-python").textContent = snippets.python;
  }

  function showMode() {
    Object.entries(forms).forEach(([name, form]) => {
      if (form) form.hidden = name !== mode();
    });
    if (settings) settings.hidden = mode() === "embeddings";
    updateSnippets();
  }

  function selectMode(name) {
    const radio = document.getElementById(`playground-mode-${name}`);
    if (radio) radio.checked = true;
    showMode();
  }

  playground.querySelectorAll('input[name="playground-mode"]').forEach((radio) => {
    radio.addEventListener("change", showMode);
  });
  keySelect.addEventListener("change", updateSnippets);
  if (completionForm && sessionStorage.getItem(noTemplateKey)) {
    selectMode("completion");
    notice.textContent = noTemplateNotice(model);
  } else {
    showMode();
  }

  /** Return the temperature and max tokens that are set, or null after showing what is invalid. */
  function readOptions() {
    const temperature = settings.elements.temperature;
    const maxTokens = settings.elements.max_tokens;
    const maxAllowed = Number(maxTokens.max);
    const options = {};
    let firstInvalid = null;

    const temperatureError = checkNumber(temperature, MIN_TEMPERATURE, MAX_TEMPERATURE, false);
    showFieldError(temperature, "sampling-temperature-error", temperatureError);
    if (temperatureError) firstInvalid = temperature;
    else if (temperature.value !== "") options.temperature = Number(temperature.value);

    const maxTokensError = checkNumber(maxTokens, 1, maxAllowed, true);
    showFieldError(maxTokens, "sampling-max-tokens-error", maxTokensError);
    if (maxTokensError) firstInvalid ??= maxTokens;
    else if (maxTokens.value !== "") options.max_tokens = Number(maxTokens.value);

    if (firstInvalid) {
      firstInvalid.focus();
      return null;
    }
    return options;
  }

  function chatMessages() {
    const system = chatForm.elements.system.value.trim();
    const turns = conversation.map((message) => ({ ...message }));
    return system ? [{ role: "system", content: system }, ...turns] : turns;
  }

  async function sendChat() {
    const input = chatForm.elements.message;
    const slot = document.getElementById("chat-error");
    slot.textContent = "";
    trimButton.hidden = true;
    const text = input.value.trim();
    if (!text) {
      slot.textContent = "Write a message first.";
      input.focus();
      return;
    }
    const options = readOptions();
    if (!options) return;
    const log = document.getElementById("chat-log");
    const question = appendMessage(log, "user", text);
    const reply = appendMessage(log, "assistant", "");
    conversation.push({ role: "user", content: text });
    const messages = chatMessages();
    sentChat = { messages, options };
    updateSnippets();
    input.value = "";

    const send = chatForm.querySelector('button[type="submit"]');
    send.disabled = true;
    log.setAttribute("aria-busy", "true");
    try {
      const body = { model, messages, stream: true, ...options };
      const answer = await streamText(baseUrl, "/chat/completions", keySelect.value, body, reply, chatPiece);
      conversation.push({ role: "assistant", content: answer });
      reply.dataset.done = "true";
    } catch (error) {
      // Leave the conversation as it was, and the message ready to send again.
      conversation.pop();
      question.closest(".message").remove();
      reply.closest(".message").remove();
      input.value = text;
      if (error.code === NO_CHAT_TEMPLATE && completionForm) {
        switchToCompletion(text);
        return;
      }
      slot.textContent = error.message;
      if (error.code === CONTEXT_LENGTH_EXCEEDED && conversation.length > 0) {
        slot.textContent += " Drop the oldest turns to make room, or clear the conversation.";
        trimButton.hidden = false;
      }
    } finally {
      send.disabled = false;
      log.removeAttribute("aria-busy");
    }
  }

  // Remember that the model has no chat template, then move the message to the prompt
  // and send it as a completion. A plain prompt has no system role, so the system
  // prompt goes in front of the message, where the user sees and can edit it.
  function switchToCompletion(text) {
    sessionStorage.setItem(noTemplateKey, "true");
    const system = chatForm.elements.system.value.trim();
    chatForm.elements.message.value = "";
    completionForm.elements.prompt.value = system ? `${system}\n\n${text}` : text;
    selectMode("completion");
    notice.textContent = noTemplateNotice(model);
    if (system) notice.textContent += " The prompt starts with your system prompt, followed by your message.";
    completionForm.elements.prompt.focus();
    completionForm.requestSubmit();
  }

  chatForm?.addEventListener("submit", (event) => {
    event.preventDefault();
    sendChat();
  });

  // Remove the oldest user message and its reply, then send the waiting message again.
  trimButton?.addEventListener("click", () => {
    const log = document.getElementById("chat-log");
    const dropped = conversation[1]?.role === "assistant" ? 2 : 1;
    conversation.splice(0, dropped);
    for (let i = 0; i < dropped; i += 1) log.firstElementChild?.remove();
    notice.textContent = `Dropped the oldest turn; ${conversation.length} message${conversation.length === 1 ? "" : "s"} left in the conversation.`;
    chatForm.elements.message.focus();
    sendChat();
  });

  document.getElementById("chat-clear")?.addEventListener("click", () => {
    conversation.length = 0;
    sentChat = { messages: EXAMPLE_MESSAGES, options: {} };
    trimButton.hidden = true;
    document.getElementById("chat-error").textContent = "";
    updateSnippets();
    document.getElementById("chat-log").replaceChildren();
  });

  completionForm?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = completionForm.elements.prompt;
    const slot = document.getElementById("completion-error");
    const result = document.getElementById("completion-result");
    slot.textContent = "";
    const prompt = input.value;
    if (!prompt.trim()) {
      slot.textContent = "Write a prompt first.";
      input.focus();
      return;
    }
    const options = readOptions();
    if (!options) return;
    sentCompletion = { prompt, options };
    updateSnippets();
    result.textContent = "";
    delete result.dataset.done;
    delete result.dataset.chunks;

    const button = completionForm.querySelector('button[type="submit"]');
    button.disabled = true;
    result.setAttribute("aria-busy", "true");
    try {
      const body = { model, prompt, stream: true, ...options };
      await streamText(baseUrl, "/completions", keySelect.value, body, result, completionPiece);
      result.dataset.done = "true";
    } catch (error) {
      slot.textContent = error.message;
    } finally {
      button.disabled = false;
      result.removeAttribute("aria-busy");
    }
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

function noTemplateNotice(model) {
  return `Model ${model} has no chat template, so the playground sends plain prompts to /v1/completions.`;
}

/**
 * Return the error message for a number input, or "" when it is empty or valid: a
 * number from `min` to `max`, and a whole number when `integer` is true.
 */
function checkNumber(input, min, max, integer) {
  const label = input.labels[0].textContent;
  const kind = integer ? "a whole number" : "a number";
  if (input.validity.badInput) return `${label} must be ${kind} from ${min} to ${max}.`;
  if (input.value === "") return "";
  const value = Number(input.value);
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    return `${label} must be ${kind} from ${min} to ${max}, not ${input.value}.`;
  }
  return "";
}

function showFieldError(input, slotId, message) {
  document.getElementById(slotId).textContent = message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

const chatPiece = (chunk) => chunk.choices?.[0]?.delta?.content;
const completionPiece = (chunk) => chunk.choices?.[0]?.text;

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
    const error = new Error(`${message} (status ${response.status})`);
    error.status = response.status;
    error.code = data?.error?.code;
    throw error;
  }
  return response;
}

/**
 * Stream a reply into `target`, one server-sent event at a time, and return the whole
 * reply. `pieceOf` returns the text of one chunk. `target.dataset.chunks` counts the
 * pieces that arrived.
 */
async function streamText(baseUrl, path, key, body, target, pieceOf) {
  const response = await gatewayRequest(baseUrl, path, key, body);
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
        const piece = pieceOf(chunk);
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

function chatSnippets(baseUrl, model, key, messages, options) {
  const body = JSON.stringify({ model, messages, stream: true, ...options });
  return {
    curl: curlLines(baseUrl, "/chat/completions", key, body),
    python: [
      "from openai import OpenAI",
      "",
      ...clientLines(baseUrl, key),
      "stream = client.chat.completions.create(",
      `    model="${model}",`,
      `    messages=${pythonLiteral(messages)},`,
      ...optionLines(options),
      "    stream=True,",
      ")",
      "for chunk in stream:",
      '    print(chunk.choices[0].delta.content or "", end="", flush=True)',
      "print()",
    ].join("\n"),
  };
}

function completionSnippets(baseUrl, model, key, prompt, options) {
  const body = JSON.stringify({ model, prompt, stream: true, ...options });
  return {
    curl: curlLines(baseUrl, "/completions", key, body),
    python: [
      "from openai import OpenAI",
      "",
      ...clientLines(baseUrl, key),
      "stream = client.completions.create(",
      `    model="${model}",`,
      `    prompt=${pythonLiteral(prompt)},`,
      ...optionLines(options),
      "    stream=True,",
      ")",
      "for chunk in stream:",
      '    print(chunk.choices[0].text, end="", flush=True)',
      "print()",
    ].join("\n"),
  };
}

function curlLines(baseUrl, path, key, body) {
  return [
    `curl -sN ${baseUrl}${path} \\`,
    `  -H "Authorization: Bearer ${key}" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d ${shellQuoted(body)}`,
  ].join("\n");
}

// Keyword arguments for the temperature and max tokens that are set. Both are numbers.
function optionLines(options) {
  return Object.entries(options).map(([name, value]) => `    ${name}=${value},`);
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
