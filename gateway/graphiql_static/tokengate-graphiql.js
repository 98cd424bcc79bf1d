// tokengate's GraphiQL page: starts GraphiQL (loaded before this file from the gateway
// itself) against the GraphQL endpoint this page was served from. Served as a file: the
// page's Content-Security-Policy allows no inline script.
//
// The Headers pane holds bearer secrets, so nothing of it is ever written to the browser's
// storage: GraphiQL is told not to persist headers (and not to offer the switch), and the
// storage it is given drops the headers key and every "headers" member of what it saves
// (tabs, history, favourites) whatever GraphiQL asks. Queries and variables are kept, as GraphiQL usually does.
(function () {
  "use strict";

  var root = document.getElementById("graphiql");
  var NAMESPACE = "graphiql:";
  var NEVER_STORED = [NAMESPACE + "headers", NAMESPACE + "shouldPersistHeaders"];
  var PROBE = NAMESPACE + "tabState";
  var VARIABLES = NAMESPACE + "variables";

  function fail(message) {
    root.textContent = "";
    var p = document.createElement("p");
    p.className = "tg-message";
    p.textContent = message;
    root.appendChild(p);
  }

  if (!window.React || !window.ReactDOM || !window.GraphiQL) {
    fail(
      "GraphiQL's files did not load from this gateway. Run `tokengate graphiql install` " +
        "on the machine running the gateway, then reload."
    );
    return;
  }

  // localStorage when the browser allows it, else memory for this page only.
  var backing;
  try {
    backing = window.localStorage;
    backing.getItem(PROBE);
  } catch (e) {
    backing = null;
  }
  var memory = {};

  function rawGet(key) {
    return backing ? backing.getItem(key) : Object.prototype.hasOwnProperty.call(memory, key) ? memory[key] : null;
  }
  function rawSet(key, value) {
    if (backing) {
      backing.setItem(key, value);
    } else {
      memory[key] = String(value);
    }
  }
  function rawRemove(key) {
    if (backing) {
      backing.removeItem(key);
    } else {
      delete memory[key];
    }
  }
  function ownKeys() {
    var keys = [];
    var i;
    if (backing) {
      for (i = 0; i < backing.length; i += 1) {
        keys.push(backing.key(i));
      }
    } else {
      keys = Object.keys(memory);
    }
    return keys.filter(function (key) {
      return key && key.indexOf(NAMESPACE) === 0;
    });
  }

  // Every value GraphiQL keeps is saved without headers: the tabs (GraphiQL nulls them
  // itself when not persisting), and also the history and favourites, which GraphiQL 3
  // saves with the headers each query ran with. Any "headers" member, at any depth, is
  // nulled; a value that is not JSON is kept as is (the query text, an operation name).
  function scrub(node) {
    if (Array.isArray(node)) {
      node.forEach(scrub);
    } else if (node && typeof node === "object") {
      Object.keys(node).forEach(function (name) {
        if (name.toLowerCase() === "headers") {
          node[name] = null;
        } else {
          scrub(node[name]);
        }
      });
    }
    return node;
  }
  function withoutHeaders(value) {
    var text = String(value);
    var parsed;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      return text;
    }
    return parsed && typeof parsed === "object" ? JSON.stringify(scrub(parsed)) : text;
  }

  var storage = {
    getItem: function (key) {
      return NEVER_STORED.indexOf(key) >= 0 ? null : rawGet(key);
    },
    setItem: function (key, value) {
      if (NEVER_STORED.indexOf(key) >= 0) {
        return;
      }
      // The variables pane's text is the user's own JSON: kept as typed.
      rawSet(key, key === VARIABLES ? String(value) : withoutHeaders(value));
    },
    removeItem: function (key) {
      rawRemove(key);
    },
    clear: function () {
      ownKeys().forEach(rawRemove);
    },
    get length() {
      return ownKeys().length;
    },
  };

  // Whatever an older page (or an older GraphiQL) may have left behind.
  NEVER_STORED.forEach(rawRemove);
  ownKeys().forEach(function (key) {
    var saved = rawGet(key);
    try {
      if (saved !== null) {
        storage.setItem(key, saved);
      }
    } catch (e) {
      rawRemove(key); // could not be rewritten (storage full): not kept as it was
    }
  });

  var fetcher = window.GraphiQL.createFetcher({
    url: window.location.pathname,
    // The page's own origin only; cookies are never what authenticates a query.
    fetch: function (url, init) {
      return window.fetch(url, Object.assign({}, init, { credentials: "omit" }));
    },
  });

  var element = window.React.createElement(window.GraphiQL, {
    fetcher: fetcher,
    storage: storage,
    shouldPersistHeaders: false,
    showPersistHeadersSettings: false,
    isHeadersEditorEnabled: true,
    defaultEditorToolsVisibility: "headers",
    defaultHeaders: '{\n  "Authorization": "Bearer <token>"\n}',
  });
  window.ReactDOM.createRoot(root).render(element);
})();
