// The agents' console: live updates from the event stream, without a build step.
// Pages are rendered by the server; this script only refreshes their fragments when an event
// says something changed, and keeps the stream open (a new short-lived token on every connect).
(function () {
  "use strict";

  var body = document.body;
  var page = body.dataset.console;
  if (!page) return; // the sign-in page needs no script

  var conversationId = body.dataset.conversationId || null;
  var agentId = body.dataset.agentId || null;
  var live = document.getElementById("live");
  var connection = document.querySelector("[data-connection]");
  var source = null;
  var retryDelay = 1000;
  var retryTimer = null;

  function announce(text) {
    if (!live) return;
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 50);
  }

  function setConnection(state) {
    if (!connection) return;
    connection.dataset.state = state;
    connection.textContent = state === "live" ? "Live" : "Reconnecting…";
  }

  function localizeTimes(root) {
    var times = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(when)) {
        times[i].textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        times[i].title = when.toLocaleString();
      }
    }
  }

  function signedOut() {
    window.location.assign("/console/sign-in");
  }

  // Replace a fragment's content, keeping keyboard focus on the element that had it.
  function refresh(name) {
    var element = document.querySelector('[data-fragment="' + name + '"]');
    if (!element) return Promise.resolve();
    var focusedId = document.activeElement && element.contains(document.activeElement)
      ? document.activeElement.id : null;
    var opened = [];
    var details = element.querySelectorAll("details[open][id]");
    for (var d = 0; d < details.length; d++) opened.push(details[d].id);
    return fetch(element.dataset.src, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "console", "Accept": "text/html" },
    }).then(function (response) {
      if (response.status === 401) { signedOut(); return null; }
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html === null || html === undefined) return;
      element.innerHTML = html;
      localizeTimes(element);
      opened.forEach(function (id) {
        var again = document.getElementById(id);
        if (again) again.open = true;
      });
      if (focusedId) {
        var again = document.getElementById(focusedId);
        if (again) again.focus();
      }
      if (name === "messages") scrollThread();
    }).catch(function () { /* the next event or reconnect refreshes again */ });
  }

  function refreshAll() {
    refresh("agent");
    refresh("conversations");
    refresh("queue");
    refresh("messages");
  }

  function scrollThread() {
    var thread = document.querySelector(".thread .message:last-child");
    if (thread && thread.scrollIntoView) thread.scrollIntoView({ block: "nearest" });
  }

  function notHeldAnymore() {
    var held = document.querySelector("[data-held]");
    if (!held) return;
    var controls = held.querySelectorAll("textarea, input, select, button");
    for (var i = 0; i < controls.length; i++) controls[i].disabled = true;
    var error = document.querySelector("[data-reply-error]");
    if (error) {
      error.hidden = false;
      error.textContent = "This conversation is no longer assigned to you.";
    }
  }

  var handlers = {
    "assignment.offered": function (event) {
      refresh("conversations");
      refresh("queue");
      announce("A conversation was assigned to you.");
      if (event.conversation_id === conversationId) window.location.reload();
    },
    "assignment.removed": function (event) {
      refresh("conversations");
      if (event.conversation_id === conversationId) notHeldAnymore();
    },
    "message.received": function (event) {
      refresh("conversations");
      if (event.conversation_id === conversationId) {
        refresh("messages");
        announce("New message from the customer.");
      } else {
        announce("New message in one of your conversations.");
      }
    },
    "delivery.failed": function (event) {
      if (event.conversation_id === conversationId) refresh("messages");
      announce("A message could not be delivered.");
    },
    "queue.changed": function () { refresh("queue"); },
    "agent.status": function (event) {
      if (event.agent_id === agentId) refresh("agent");
    },
  };

  function scheduleReconnect() {
    setConnection("down");
    if (retryTimer) return;
    retryTimer = window.setTimeout(function () {
      retryTimer = null;
      connect();
    }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  }

  function connect() {
    if (source) { source.close(); source = null; }
    fetch("/console/events/token", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-Requested-With": "console" },
    }).then(function (response) {
      if (response.status === 401) { signedOut(); return null; }
      if (!response.ok) throw new Error("token " + response.status);
      return response.json();
    }).then(function (grant) {
      if (!grant) return;
      source = new EventSource(grant.stream_url);
      source.addEventListener("stream.open", function () {
        var first = retryDelay === 1000 && !body.dataset.connectedOnce;
        body.dataset.connectedOnce = "1";
        retryDelay = 1000;
        setConnection("live");
        // Events published while we were away are not replayed: read the state again.
        if (!first) refreshAll();
      });
      Object.keys(handlers).forEach(function (type) {
        source.addEventListener(type, function (message) {
          var event;
          try { event = JSON.parse(message.data); } catch (e) { return; }
          handlers[type](event);
        });
      });
      source.addEventListener("stream.closed", signedOut);
      source.onerror = function () {
        if (source) { source.close(); source = null; }
        scheduleReconnect();
      };
    }).catch(scheduleReconnect);
  }

  // The reply form posts in the background so the stream and the draft survive; without
  // this script it is an ordinary form.
  var reply = document.querySelector("form[data-reply]");
  if (reply) {
    reply.addEventListener("submit", function (submitEvent) {
      submitEvent.preventDefault();
      var button = reply.querySelector("button[type=submit]");
      var text = reply.querySelector("textarea");
      var error = document.querySelector("[data-reply-error]");
      if (button.disabled) return;
      button.disabled = true;
      fetch(reply.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-Requested-With": "console" },
        body: new URLSearchParams(new FormData(reply)),
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (response.status === 401) { signedOut(); return; }
          if (!response.ok) {
            error.hidden = false;
            error.textContent = data.error || data.detail || "The reply was not sent.";
            return;
          }
          error.hidden = true;
          text.value = "";
          announce(data.notice || "Reply sent.");
          refresh("messages");
        });
      }).catch(function () {
        error.hidden = false;
        error.textContent = "The reply was not sent: the server could not be reached.";
      }).then(function () {
        button.disabled = false;
        text.focus();
      });
    });
  }

  // Plain forms (status, transfer, resolve, sign out): no double submits.
  var forms = document.querySelectorAll("form:not([data-reply])");
  for (var i = 0; i < forms.length; i++) {
    forms[i].addEventListener("submit", function (submitEvent) {
      var form = submitEvent.currentTarget;
      if (form.dataset.submitted) { submitEvent.preventDefault(); return; }
      form.dataset.submitted = "1";
    });
  }

  localizeTimes(document);
  scrollThread();
  connect();
})();
