// The management page: plain DOM, no build step. Every value from the server is put in the page as
// text (textContent, never innerHTML), because queue and exchange names are whatever clients chose.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  // Rows rendered per list: a browser table stays fast up to a few hundred rows, and a broker
  // with 100,000 queues is browsed by filtering, not scrolling.
  const PAGE_SIZE = 500;
  const AUTH_KEY = "management.auth";
  const USER_KEY = "management.user";
  const DEFAULT_EXCHANGE = "(AMQP default)";

  const $ = (selector, root = document) => root.querySelector(selector);
  const enc = encodeURIComponent;

  let auth = sessionStorage.getItem(AUTH_KEY);
  let timer = null;
  let generation = 0;
  // Get results, keyed by queue, survive the table being redrawn by the next refresh.
  const gotMessages = new Map();
  let publishPreset = null;

  // ---- HTTP ------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, reason) {
      super(reason);
      this.status = status;
    }
  }

  function basicAuth(user, password) {
    // btoa takes Latin-1 only; the header carries the UTF-8 bytes of "user:password".
    let binary = "";
    for (const byte of new TextEncoder().encode(`${user}:${password}`)) binary += String.fromCharCode(byte);
    return "Basic " + btoa(binary);
  }

  async function api(method, path, body, authorization = auth) {
    const init = {
      method,
      // "omit" keeps the browser's own login dialog away when the server answers 401 with
      // WWW-Authenticate (as RabbitMQ does); the explicit header is still sent.
      credentials: "omit",
      headers: { Authorization: authorization },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch("api/" + path, init);
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = text; }
    }
    if (!response.ok) {
      const reason = (data && (data.reason || data.error)) || response.statusText || `HTTP ${response.status}`;
      throw new ApiError(response.status, typeof reason === "string" ? reason : JSON.stringify(reason));
    }
    return data;
  }

  // RabbitMQ's pagination (page, page_size, name, columns) keeps large lists cheap. A server that
  // ignores those parameters answers with the whole array: it is filtered and cut here instead.
  async function loadList(kind, filter, options) {
    let path = kind;
    if (options.paginate) {
      const query = new URLSearchParams({ page: "1", page_size: String(PAGE_SIZE) });
      if (filter) {
        query.set("name", filter);
        query.set("use_regex", "false");
      }
      if (options.columns) query.set("columns", options.columns.join(","));
      path += "?" + query;
    }
    const data = await api("GET", path);
    if (Array.isArray(data)) {
      const needle = filter.toLowerCase();
      const matching = needle ? data.filter((item) => options.text(item).toLowerCase().includes(needle)) : data;
      matching.sort((a, b) => cmp(a.vhost, b.vhost) || cmp(options.text(a), options.text(b)));
      return { items: matching.slice(0, PAGE_SIZE), filtered: matching.length, total: data.length };
    }
    return { items: data.items || [], filtered: data.filtered_count, total: data.total_count };
  }

  const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

  // ---- Formatting ------------------------------------------------------------------------------

  const number = (n) => (n === undefined || n === null ? "" : Number(n).toLocaleString("en-US"));

  function rate(stats, key) {
    const details = stats && stats[key + "_details"];
    return details && typeof details.rate === "number" ? details.rate : 0;
  }

  const perSecond = (r) => r.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 }) + "/s";

  function bytesPerSecond(r) {
    const units = ["B/s", "kB/s", "MB/s", "GB/s"];
    let i = 0;
    while (r >= 1000 && i < units.length - 1) { r /= 1000; i += 1; }
    return (i === 0 ? Math.round(r) : r.toFixed(1)) + " " + units[i];
  }

  const exchangeLabel = (name) => (name === "" ? DEFAULT_EXCHANGE : name);
  // The default exchange has no name; the HTTP API spells it amq.default in paths.
  const exchangeInPath = (name) => enc(name === "" ? "amq.default" : name);
  const queueKey = (vhost, name) => vhost + "\u0000" + name;
  const hasArgs = (args) => args && Object.keys(args).length > 0;

  // ---- DOM helpers -----------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const td = (text, cls) => el("td", { class: cls, text });
  const num = (text, cls = "") => el("td", { class: ("num " + cls).trim(), text });
  const vhostCell = (vhost) => el("td", { class: "vhost-col", text: vhost });

  function features(pairs, args) {
    const cell = el("td", { class: "features" });
    for (const [on, label, title] of pairs) {
      if (on) cell.append(el("abbr", { title, text: label }), " ");
    }
    if (hasArgs(args)) cell.append(el("abbr", { title: JSON.stringify(args), text: "Args" }));
    return cell;
  }

  function setRows(table, rows, multiVhost) {
    const tbody = $("tbody", table);
    const fragment = document.createDocumentFragment();
    fragment.append(...rows);
    tbody.replaceChildren(fragment);
    // The vhost column is noise on the usual single-vhost broker.
    table.classList.toggle("multi-vhost", multiVhost);
  }

  function emptyRow(table, text) {
    const columns = $("thead tr", table).children.length;
    return el("tr", { class: "empty" }, el("td", { colSpan: columns, text }));
  }

  function showCount(view, list, noun) {
    const { items, filtered, total } = list;
    let text = `${number(total)} ${noun}${total === 1 ? "" : "s"}`;
    if (filtered !== total) text += `, ${number(filtered)} matching`;
    if (items.length < filtered) text += ` (first ${number(items.length)} shown: filter to narrow)`;
    $(".count", view).textContent = text;
  }

  const distinctVhosts = (items) => new Set(items.map((item) => item.vhost)).size > 1;

  function notify(text, isError = false) {
    const notice = $("#notice");
    notice.textContent = text;
    notice.className = isError ? "error" : "ok";
    notice.hidden = !text;
  }

  // ---- Views -----------------------------------------------------------------------------------

  function card(id, label, value, detail) {
    return el("div", null, el("dt", { text: label }), el("dd", { id, text: value }),
      detail ? el("dd", { class: "detail", text: detail }) : null);
  }

  const overview = {
    load: () => api("GET", "overview"),
    render(data) {
      showProduct(data);
      const totals = data.object_totals || {};
      $("#overview-totals").replaceChildren(
        ...["connections", "channels", "exchanges", "queues", "consumers"].map((key) =>
          card("total-" + key, key[0].toUpperCase() + key.slice(1), number(totals[key] || 0))));
      const messages = data.queue_totals || {};
      $("#overview-messages").replaceChildren(
        card("messages-ready", "Ready", number(messages.messages_ready || 0)),
        card("messages-unacked", "Unacked", number(messages.messages_unacknowledged || 0)),
        card("messages-total", "Total", number(messages.messages || 0)));
      const stats = data.message_stats || {};
      $("#overview-rates").replaceChildren(
        ...[["publish", "Publish"], ["deliver_get", "Deliver/get"], ["ack", "Ack"]].map(([key, label]) =>
          card("rate-" + key, label, perSecond(rate(stats, key)), `${number(stats[key] || 0)} in total`)));
      const table = $("#overview-listeners");
      setRows(table, (data.listeners || []).map((l) =>
        el("tr", null, td(l.protocol), td(l.ip_address), num(l.port))), false);
    },
  };

  const QUEUE_COLUMNS = [
    "name", "vhost", "type", "state", "durable", "auto_delete", "exclusive", "arguments", "consumers",
    "messages", "messages_ready", "messages_unacknowledged",
    "message_stats.publish_details.rate", "message_stats.deliver_get_details.rate",
  ];

  const queues = {
    load: () => loadList("queues", $("#view-queues .filter").value.trim(),
      { paginate: true, columns: QUEUE_COLUMNS, text: (q) => q.name }),
    render(list) {
      const table = $("#queues");
      showCount($("#view-queues"), list, "queue");
      const rows = [];
      for (const q of list.items) {
        const key = queueKey(q.vhost, q.name);
        rows.push(el("tr", { "data-vhost": q.vhost, "data-name": q.name },
          vhostCell(q.vhost),
          td(q.name, "name"),
          td(q.type || "classic"),
          features([[q.durable, "D", "durable"], [q.auto_delete, "AD", "auto-delete"],
            [q.exclusive, "Excl", "exclusive"]], q.arguments),
          td(q.state || ""),
          num(number(q.consumers), "consumers"),
          num(number(q.messages_ready), "ready"),
          num(number(q.messages_unacknowledged), "unacked"),
          num(number(q.messages), "total"),
          num(perSecond(rate(q.message_stats, "publish")), "publish-rate"),
          num(perSecond(rate(q.message_stats, "deliver_get")), "deliver-rate"),
          el("td", { class: "actions" },
            el("button", { type: "button", class: "get", text: "Get", title: "Fetch one message and requeue it",
              onclick: () => getMessage(q.vhost, q.name) }),
            el("button", { type: "button", class: "publish", text: "Publish", title: "Publish a message to this queue",
              onclick: () => openPublish(q.vhost, "", q.name) }),
            el("button", { type: "button", class: "purge danger", text: "Purge", title: "Delete all ready messages",
              onclick: () => purge(q.vhost, q.name) }))));
        if (gotMessages.has(key)) rows.push(gotRow(table, q.vhost, q.name, gotMessages.get(key)));
      }
      if (!rows.length) rows.push(emptyRow(table, list.total ? "No queue matches the filter." : "No queues."));
      setRows(table, rows, distinctVhosts(list.items));
    },
  };

  function gotRow(table, vhost, name, result) {
    const columns = $("thead tr", table).children.length;
    const cell = el("td", { colSpan: columns },
      el("button", { type: "button", class: "close", text: "×", title: "Close",
        onclick: () => { gotMessages.delete(queueKey(vhost, name)); redraw(); } }));
    if (result.error) {
      cell.append(el("p", { class: "error", text: "Get failed: " + result.error }));
    } else if (!result.messages.length) {
      cell.append(el("p", { text: `Queue ${name} is empty.` }));
    } else {
      for (const m of result.messages) {
        const meta = [
          `exchange ${exchangeLabel(m.exchange)}`,
          `routing key "${m.routing_key}"`,
          m.redelivered ? "redelivered" : "first delivery",
          `${number(m.payload_bytes)} bytes, ${m.payload_encoding}`,
          `${number(m.message_count)} more in the queue`,
        ];
        cell.append(el("p", { class: "meta", text: meta.join(" · ") }));
        if (m.properties && Object.keys(m.properties).length) {
          cell.append(el("p", { class: "meta", text: "properties " + JSON.stringify(m.properties) }));
        }
        cell.append(el("pre", { class: "payload", text: m.payload }));
      }
      cell.append(el("p", { class: "meta", text: "The message was requeued." }));
    }
    return el("tr", { class: "got" }, cell);
  }

  const exchanges = {
    load: () => loadList("exchanges", $("#view-exchanges .filter").value.trim(),
      { paginate: true, text: (x) => x.name }),
    render(list) {
      const table = $("#exchanges");
      showCount($("#view-exchanges"), list, "exchange");
      const rows = list.items.map((x) => el("tr", { "data-vhost": x.vhost, "data-name": x.name },
        vhostCell(x.vhost),
        td(exchangeLabel(x.name), x.name === "" ? "name default" : "name"),
        td(x.type),
        features([[x.durable, "D", "durable"], [x.auto_delete, "AD", "auto-delete"],
          [x.internal, "I", "internal"]], x.arguments),
        num(perSecond(rate(x.message_stats, "publish_in"))),
        num(perSecond(rate(x.message_stats, "publish_out"))),
        el("td", { class: "actions" }, x.internal ? null :
          el("button", { type: "button", class: "publish", text: "Publish",
            onclick: () => openPublish(x.vhost, x.name, "") }))));
      if (!rows.length) rows.push(emptyRow(table, "No exchange matches the filter."));
      setRows(table, rows, distinctVhosts(list.items));
    },
  };

  const bindingText = (b) => [b.source, b.destination, b.routing_key].join(" ");

  const bindings = {
    // RabbitMQ does not paginate bindings.
    load: () => loadList("bindings", $("#view-bindings .filter").value.trim(),
      { paginate: false, text: bindingText }),
    render(list) {
      const table = $("#bindings");
      showCount($("#view-bindings"), list, "binding");
      const rows = list.items.map((b) => el("tr", null,
        vhostCell(b.vhost),
        td(exchangeLabel(b.source), b.source === "" ? "default" : ""),
        el("td", null, b.destination, b.destination_type === "exchange"
          ? el("span", { class: "muted", text: " (exchange)" }) : null),
        td(b.routing_key),
        td(hasArgs(b.arguments) ? JSON.stringify(b.arguments) : "")));
      if (!rows.length) rows.push(emptyRow(table, list.total ? "No binding matches the filter." : "No bindings."));
      setRows(table, rows, distinctVhosts(list.items));
    },
  };

  const connections = {
    load: () => loadList("connections", $("#view-connections .filter").value.trim(),
      { paginate: true, text: (c) => c.name }),
    render(list) {
      const table = $("#connections");
      showCount($("#view-connections"), list, "connection");
      const rows = list.items.map((c) => {
        const client = c.client_properties || {};
        const named = c.user_provided_name || client.connection_name;
        return el("tr", { "data-name": c.name },
          vhostCell(c.vhost),
          el("td", { class: "name" }, c.name, named ? el("div", { class: "muted", text: named }) : null),
          td(c.user),
          td([client.product, client.version].filter(Boolean).join(" ")),
          td(c.protocol),
          num(number(c.channels)),
          td(c.state),
          num(bytesPerSecond(rate(c, "recv_oct"))),
          num(bytesPerSecond(rate(c, "send_oct"))));
      });
      if (!rows.length) rows.push(emptyRow(table, list.total ? "No connection matches the filter." : "No connections."));
      setRows(table, rows, distinctVhosts(list.items));
    },
  };

  const channels = {
    load: () => loadList("channels", $("#view-channels .filter").value.trim(),
      { paginate: true, text: (c) => c.name }),
    render(list) {
      const table = $("#channels");
      showCount($("#view-channels"), list, "channel");
      const rows = list.items.map((c) => el("tr", { "data-name": c.name },
        vhostCell(c.vhost),
        td(c.name, "name"),
        td(c.user),
        td([c.confirm ? "C" : "", c.transactional ? "T" : ""].join(" ").trim()),
        td(c.state),
        num(c.global_prefetch_count ? `${number(c.prefetch_count)} (global ${number(c.global_prefetch_count)})`
          : number(c.prefetch_count)),
        num(number(c.consumer_count)),
        num(number(c.messages_unacknowledged)),
        num(number(c.messages_unconfirmed)),
        num(perSecond(rate(c.message_stats, "publish"))),
        num(perSecond(rate(c.message_stats, "deliver_get"))),
        num(perSecond(rate(c.message_stats, "ack")))));
      if (!rows.length) rows.push(emptyRow(table, list.total ? "No channel matches the filter." : "No channels."));
      setRows(table, rows, distinctVhosts(list.items));
    },
  };

  // The publish form is filled once when shown: redrawing its lists every 5 s would undo a choice
  // being made.
  let publishExchanges = [];
  const publish = {
    once: true,
    load: () => loadList("exchanges", "", { paginate: true, text: (x) => x.name }),
    render(list) {
      publishExchanges = list.items.filter((x) => !x.internal);
      const preset = publishPreset || {};
      // Aimed anew from a queue or exchange: the previous publish's result would mislead.
      if (publishPreset) $("#publish-result").textContent = "";
      publishPreset = null;
      const vhosts = [...new Set(publishExchanges.map((x) => x.vhost))].sort(cmp);
      const vhostSelect = $("#publish-vhost");
      const vhost = preset.vhost ?? (vhosts.includes(vhostSelect.value) ? vhostSelect.value : vhosts[0]);
      vhostSelect.replaceChildren(...vhosts.map((v) => el("option", { value: v, text: v })));
      vhostSelect.value = vhost;
      fillExchanges(preset.exchange ?? $("#publish-exchange").value);
      if (preset.key !== undefined) $("#publish-key").value = preset.key;
    },
  };

  function fillExchanges(selected) {
    const vhost = $("#publish-vhost").value;
    const names = publishExchanges.filter((x) => x.vhost === vhost).map((x) => x.name);
    const select = $("#publish-exchange");
    select.replaceChildren(...names.map((n) => el("option", { value: n, text: exchangeLabel(n) })));
    select.value = names.includes(selected) ? selected : "";
  }

  const VIEWS = { overview, queues, exchanges, bindings, connections, channels, publish };

  // ---- Actions ---------------------------------------------------------------------------------

  async function getMessage(vhost, name) {
    const key = queueKey(vhost, name);
    try {
      const messages = await api("POST", `queues/${enc(vhost)}/${enc(name)}/get`,
        { count: 1, ackmode: "ack_requeue_true", encoding: "auto" });
      gotMessages.set(key, { messages });
    } catch (error) {
      if (error.status === 401) return;
      gotMessages.set(key, { error: error.message });
    }
    refresh();
  }

  async function purge(vhost, name) {
    if (!window.confirm(`Purge all ready messages from queue "${name}"?`)) return;
    try {
      await api("DELETE", `queues/${enc(vhost)}/${enc(name)}/contents`);
      gotMessages.delete(queueKey(vhost, name));
      notify(`Purged queue ${name}.`);
    } catch (error) {
      if (error.status !== 401) notify(`Purge of ${name} failed: ${error.message}`, true);
    }
    refresh();
  }

  function openPublish(vhost, exchange, key) {
    publishPreset = { vhost, exchange, key };
    if (location.hash === "#publish") refresh(true);
    else location.hash = "#publish";
  }

  async function submitPublish(event) {
    event.preventDefault();
    const result = $("#publish-result");
    const vhost = $("#publish-vhost").value;
    const exchange = $("#publish-exchange").value;
    result.className = "";
    result.textContent = "Publishing…";
    try {
      const answer = await api("POST", `exchanges/${enc(vhost)}/${exchangeInPath(exchange)}/publish`, {
        properties: {},
        routing_key: $("#publish-key").value,
        payload: $("#publish-payload").value,
        payload_encoding: "string",
      });
      result.className = answer && answer.routed ? "ok" : "error";
      result.textContent = answer && answer.routed
        ? `Published to ${exchangeLabel(exchange)} and routed.`
        : `Published to ${exchangeLabel(exchange)} but not routed: no queue is bound for that routing key.`;
    } catch (error) {
      if (error.status === 401) return;
      result.className = "error";
      result.textContent = "Publish failed: " + error.message;
    }
  }

  // ---- Refresh loop ----------------------------------------------------------------------------

  const currentView = () => {
    const name = location.hash.slice(1);
    return VIEWS[name] ? name : "overview";
  };

  let lastData = null;

  function redraw() {
    if (lastData && lastData.view === currentView()) VIEWS[lastData.view].render(lastData.data);
  }

  async function refresh(entering = false) {
    clearTimeout(timer);
    timer = null;
    if (!auth) return;
    const name = currentView();
    const view = VIEWS[name];
    const mine = ++generation;
    const schedule = () => {
      if (mine === generation && auth && !view.once) timer = setTimeout(refresh, REFRESH_MS);
    };
    // A hidden tab costs the server nothing; it refreshes when shown again.
    if (document.hidden || (view.once && !entering)) return schedule();
    if (entering) setStatus("Loading…");
    try {
      const data = await view.load();
      if (mine !== generation) return;
      lastData = { view: name, data };
      view.render(data);
      setStatus("Updated " + new Date().toLocaleTimeString("en-GB"));
    } catch (error) {
      if (mine !== generation) return;
      if (error.status === 401) {
        logout("The server refused the credentials: log in again.");
        return;
      }
      setStatus(error instanceof ApiError ? `Error: ${error.message}` : "Server unreachable", true);
    }
    schedule();
  }

  function setStatus(text, isError = false) {
    const status = $("#status");
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  function showProduct(data) {
    if (!data || !data.product_name) return;
    const title = `${data.product_name} ${data.product_version || ""}`.trim();
    $("#product").replaceChildren(title, data.node ? el("span", { class: "node", text: data.node }) : "");
    document.title = `${title} management`;
  }

  function showView() {
    const name = currentView();
    for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + name;
    for (const link of document.querySelectorAll("#tabs a")) {
      link.classList.toggle("active", link.getAttribute("href") === "#" + name);
    }
    notify("");
    refresh(true);
  }

  // ---- Session ---------------------------------------------------------------------------------

  function start() {
    $("#login").hidden = true;
    $("#tabs").hidden = false;
    $("#session").hidden = false;
    $("#who").textContent = sessionStorage.getItem(USER_KEY) || "";
    showView();
  }

  function logout(message = "") {
    auth = null;
    generation += 1;
    clearTimeout(timer);
    lastData = null;
    gotMessages.clear();
    sessionStorage.removeItem(AUTH_KEY);
    sessionStorage.removeItem(USER_KEY);
    for (const section of document.querySelectorAll(".view")) section.hidden = true;
    $("#tabs").hidden = true;
    $("#session").hidden = true;
    notify("");
    $("#login").hidden = false;
    $("#login-error").textContent = message;
    $("#login-password").value = "";
    $("#login-user").focus();
  }

  async function login(event) {
    event.preventDefault();
    const user = $("#login-user").value;
    const candidate = basicAuth(user, $("#login-password").value);
    const error = $("#login-error");
    error.textContent = "";
    try {
      const data = await api("GET", "overview", undefined, candidate);
      auth = candidate;
      sessionStorage.setItem(AUTH_KEY, candidate);
      sessionStorage.setItem(USER_KEY, user);
      showProduct(data);
      start();
    } catch (e) {
      error.textContent = e.status === 401 ? "Login failed: wrong user or password."
        : e instanceof ApiError ? `Login failed: ${e.message}` : "Login failed: server unreachable.";
    }
  }

  function init() {
    const header = $("header");
    header.after(el("p", { id: "notice", hidden: true, role: "status" }));
    $("#login").addEventListener("submit", login);
    $("#logout").addEventListener("click", () => logout());
    $("#refresh").addEventListener("click", () => refresh(true));
    $("#publish").addEventListener("submit", submitPublish);
    $("#publish-vhost").addEventListener("change", () => fillExchanges(""));
    let debounce = null;
    for (const input of document.querySelectorAll(".filter")) {
      input.addEventListener("input", () => {
        clearTimeout(debounce);
        debounce = setTimeout(() => refresh(true), 200);
      });
    }
    window.addEventListener("hashchange", () => { if (auth) showView(); });
    document.addEventListener("visibilitychange", () => { if (!document.hidden && auth) refresh(); });
    if (auth) {
      // The product name is in the overview; the queues view alone would leave the generic title.
      api("GET", "overview").then(showProduct, () => {});
      start();
    } else {
      logout();
    }
  }

  init();
})();
