// EchoCXR workspace: the little the pages need beyond HTML. No libraries, no build step; the
// Content Security Policy allows this file and nothing inline.
"use strict";

const csrf = () => document.body.dataset.csrf || "";

// ---- keyboard shortcuts: single keys, silent in text fields, switchable off (WCAG 2.1.4) ----
const SHORTCUTS_KEY = "echocxr.shortcuts";
const shortcutsOn = () => localStorage.getItem(SHORTCUTS_KEY) !== "off";
const typing = (event) => {
  const target = event.target;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
};

function setUpShortcutSwitch() {
  const button = document.getElementById("shortcuts");
  if (!button) return;
  const show = () => {
    button.setAttribute("aria-pressed", String(shortcutsOn()));
    button.textContent = `Keyboard shortcuts: ${shortcutsOn() ? "on" : "off"}`;
  };
  button.addEventListener("click", () => {
    localStorage.setItem(SHORTCUTS_KEY, shortcutsOn() ? "off" : "on");
    show();
  });
  show();
}

// ---- worklist: j / k move between studies, Enter opens (a focused link opens itself) ----
function setUpWorklist() {
  const links = [...document.querySelectorAll("[data-rows] .row-link")];
  if (!links.length) return;
  document.addEventListener("keydown", (event) => {
    if (!shortcutsOn() || typing(event) || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key !== "j" && event.key !== "k") return;
    const at = links.indexOf(document.activeElement);
    const next = event.key === "j" ? Math.min(at + 1, links.length - 1) : Math.max(at - 1, 0);
    links[at < 0 ? 0 : next].focus();
    event.preventDefault();
  });
}

// ---- waiting pages: poll the state, reload when it changed ----
function setUpWaiting() {
  const box = document.querySelector("[data-wait]");
  if (!box) return;
  const progress = box.querySelector("progress");
  const poll = async () => {
    const response = await fetch(box.dataset.wait, { headers: { Accept: "application/json" } });
    if (response.ok) {
      const state = await response.json();
      const waiting = ["drafting", "queued", "running"].includes(state.reading || state.state);
      if (!waiting) { window.location.reload(); return; }
      if (progress) progress.value = state.percent !== undefined ? state.percent : state.progress;
    }
    setTimeout(poll, 1000);
  };
  setTimeout(poll, 1000);
}

// ---- image viewer: window/level by dragging, zoom, pan, invert; server-rendered PNGs ----
function setUpViewer() {
  const stage = document.getElementById("stage");
  if (!stage) return;
  const image = document.getElementById("xray");
  const readout = document.getElementById("readout");
  const invertButton = document.querySelector('[data-action="invert"]');
  const file = { center: Number(stage.dataset.center), width: Number(stage.dataset.width) };
  const low = Number(stage.dataset.low), high = Number(stage.dataset.high);
  const range = Math.max(high - low, 1);
  const view = { window: null, invert: false, zoom: 1, x: 0, y: 0 };
  let pending = null, dragging = null;

  const size = () => (view.zoom > 1.5 ? 2048 : 1024);
  const url = (side) => {
    const query = new URLSearchParams({ side: String(side), invert: String(view.invert) });
    if (view.window) {
      query.set("wc", view.window.center.toFixed(1));
      query.set("ww", view.window.width.toFixed(1));
    }
    return `${stage.dataset.src}?${query}`;
  };
  const describe = () => {
    const shown = view.window
      ? `Window ${Math.round(view.window.width)} / level ${Math.round(view.window.center)}`
      : "File window";
    readout.textContent = `${shown} · zoom ${view.zoom.toFixed(1)}×${view.invert ? " · inverted" : ""}`;
  };
  const place = () => {
    image.style.transform =
      `translate(calc(-50% + ${view.x}px), calc(-50% + ${view.y}px)) scale(${view.zoom})`;
  };
  // while a drag goes on, small previews at most every 60 ms; the sharp image when it stops
  const load = (side) => {
    clearTimeout(pending);
    pending = setTimeout(() => { image.src = url(side); describe(); }, side < 1024 ? 60 : 0);
  };
  const windowFrom = () => view.window || { ...file };
  const changeWindow = (dWidth, dCenter) => {
    const current = windowFrom();
    view.window = {
      width: Math.max(1, current.width + dWidth),
      center: current.center + dCenter,
    };
  };
  const zoomBy = (factor) => {
    view.zoom = Math.min(8, Math.max(1, view.zoom * factor));
    if (view.zoom === 1) { view.x = 0; view.y = 0; }
    place();
    load(size());
  };
  const reset = () => {
    Object.assign(view, { window: null, invert: false, zoom: 1, x: 0, y: 0 });
    invertButton.setAttribute("aria-pressed", "false");
    place();
    load(1024);
  };
  const toggleInvert = () => {
    view.invert = !view.invert;
    invertButton.setAttribute("aria-pressed", String(view.invert));
    load(size());
  };
  const actions = {
    "file-window": () => { view.window = null; load(size()); },
    "full-range": () => { view.window = { center: (low + high) / 2, width: range }; load(size()); },
    invert: toggleInvert,
    "zoom-in": () => zoomBy(1.25),
    "zoom-out": () => zoomBy(0.8),
    reset,
  };
  document.querySelectorAll(".toolbar [data-action]").forEach((button) => {
    button.addEventListener("click", () => actions[button.dataset.action]());
  });

  stage.addEventListener("pointerdown", (event) => {
    stage.setPointerCapture(event.pointerId);
    stage.focus();
    dragging = { x: event.clientX, y: event.clientY, pan: event.shiftKey || event.button === 1 };
  });
  stage.addEventListener("pointermove", (event) => {
    if (!dragging) return;
    const dx = event.clientX - dragging.x, dy = event.clientY - dragging.y;
    dragging.x = event.clientX;
    dragging.y = event.clientY;
    if (dragging.pan) {
      view.x += dx;
      view.y += dy;
      place();
      return;
    }
    // one stage width of drag spans the image's whole value range
    const perPixel = range / stage.clientWidth;
    changeWindow(dx * perPixel, dy * perPixel);
    load(512);
  });
  const stop = () => {
    if (dragging && !dragging.pan) load(size());
    dragging = null;
  };
  stage.addEventListener("pointerup", stop);
  stage.addEventListener("pointercancel", stop);
  stage.addEventListener("wheel", (event) => {
    event.preventDefault();
    zoomBy(event.deltaY < 0 ? 1.15 : 1 / 1.15);
  }, { passive: false });
  stage.addEventListener("keydown", (event) => {
    const step = range / 50;
    const keys = {
      ArrowLeft: () => changeWindow(-step, 0),
      ArrowRight: () => changeWindow(step, 0),
      ArrowUp: () => changeWindow(0, -step),
      ArrowDown: () => changeWindow(0, step),
    };
    if (keys[event.key]) {
      keys[event.key]();
      load(size());
    } else if (shortcutsOn() && ["+", "=", "-", "0", "i"].includes(event.key)) {
      ({ "+": () => zoomBy(1.25), "=": () => zoomBy(1.25), "-": () => zoomBy(0.8),
         0: reset, i: toggleInvert })[event.key]();
    } else {
      return;
    }
    event.preventDefault();
  });
}

// ---- sign form: put the draft's text back ----
function setUpSignForm() {
  const restore = document.querySelector('[data-action="restore-draft"]');
  if (!restore) return;
  restore.addEventListener("click", () => {
    document.getElementById("findings").value = restore.dataset.findings;
    document.getElementById("impression").value = restore.dataset.impression;
  });
}

// ---- assistant side panel ----
function setUpAssistant() {
  const form = document.getElementById("ask-form");
  if (!form) return;
  const conversation = document.getElementById("conversation");
  const input = document.getElementById("question");
  const button = form.querySelector("button");
  const history = [];
  const say = (text, kind) => {
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    conversation.append(item);
    return item;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question) return;
    say(question, "asked");
    const waiting = say("The assistant is thinking…", "answered");
    button.disabled = true;
    try {
      const response = await fetch(form.dataset.ask, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify({ question, history }),
      });
      const body = await response.json();
      if (response.ok) {
        waiting.textContent = body.answer;
        history.push([question, body.answer]);
        input.value = "";
      } else {
        waiting.className = "failed";
        waiting.textContent = typeof body.detail === "string" ? body.detail : "The question could not be asked.";
      }
    } catch (error) {
      waiting.className = "failed";
      waiting.textContent = "The service did not answer; check the connection and ask again.";
    } finally {
      button.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpShortcutSwitch();
  setUpWorklist();
  setUpWaiting();
  setUpViewer();
  setUpSignForm();
  setUpAssistant();
});
