// The cvcore serve page: choose or drop an image, POST it to /v1/models/{name}/predict for the
// top-k classes (drawn as bars) and to /v1/models/{name}/explain for the explanation map, drawn
// over the image on a canvas. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], busy: false };

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "muted";
}

async function loadModels() {
  for (;;) {
    const r = await fetch("/v1/models");
    if (r.ok) {
      state.models = await r.json();
      break;
    }
    setStatus("Warming up the models…");
    await new Promise((ok) => setTimeout(ok, 1000));
  }
  const select = $("model");
  select.innerHTML = "";
  for (const m of state.models) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = `${m.name} (${m.kind})`;
    select.appendChild(o);
  }
  const wanted = new URLSearchParams(location.search).get("model");
  if (wanted && state.models.some((m) => m.name === wanted)) select.value = wanted;
  showModelInfo();
  setStatus("Ready: choose or drop an image.");
  document.body.dataset.ready = "true";
}

function currentModel() {
  return state.models.find((m) => m.name === $("model").value);
}

function showModelInfo() {
  const m = currentModel();
  if (!m) return;
  const acc = m.metrics && m.metrics.accuracy !== undefined
    ? `, test accuracy ${(100 * m.metrics.accuracy).toFixed(1)}%` : "";
  $("model-info").textContent =
    `${m.classes.length} classes, input ${m.input_size[0]}×${m.input_size[1]} ${m.mode}` +
    `, version ${m.version}${acc}`;
}

async function post(url, file) {
  const form = new FormData();
  form.append("file", file, file.name || "upload");
  const r = await fetch(url, { method: "POST", body: form });
  const body = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) throw new Error(`${r.status}: ${body.detail || body.error}`);
  return body;
}

function drawBars(predictions) {
  const list = $("predictions");
  list.innerHTML = "";
  for (const p of predictions) {
    const li = document.createElement("li");
    li.dataset.label = p.label;
    li.dataset.probability = String(p.probability);
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = p.label;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * p.probability).toFixed(1)}%`;
    bar.appendChild(fill);
    const prob = document.createElement("span");
    prob.className = "prob";
    prob.textContent = p.probability.toFixed(3);
    li.append(name, bar, prob);
    list.appendChild(li);
  }
}

// Colour of a map value t: "signed" maps use blue (against) - white - red (for) over
// [-1, 1]; unsigned maps (Grad-CAM) a dark-blue - red - yellow ramp over [0, 1].
function colour(t, signed) {
  if (signed) {
    const a = Math.min(1, Math.abs(t));
    return t >= 0 ? [255, 255 * (1 - a), 255 * (1 - a), 200 * a]
                  : [255 * (1 - a), 255 * (1 - a), 255, 200 * a];
  }
  const r = Math.min(1, 2 * t), g = Math.max(0, 2 * t - 1), b = Math.max(0, 0.6 - t);
  return [255 * r, 255 * g, 255 * b, 80 + 140 * t];
}

function drawExplanation(image, ex) {
  const canvas = $("explanation");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  // the model saw the image stretched to its input size: draw it the same way, in grey
  ctx.filter = "grayscale(1)";
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  ctx.filter = "none";
  const map = document.createElement("canvas");
  map.width = ex.width;
  map.height = ex.height;
  const mctx = map.getContext("2d");
  const pixels = mctx.createImageData(ex.width, ex.height);
  const scale = ex.signed ? Math.max(Math.abs(ex.min), Math.abs(ex.max)) || 1
                          : (ex.max - ex.min) || 1;
  for (let i = 0; i < ex.height; i++) {
    for (let j = 0; j < ex.width; j++) {
      const v = ex.heatmap[i][j];
      const t = ex.signed ? v / scale : (v - ex.min) / scale;
      const c = colour(t, ex.signed);
      const k = 4 * (i * ex.width + j);
      pixels.data[k] = c[0]; pixels.data[k + 1] = c[1];
      pixels.data[k + 2] = c[2]; pixels.data[k + 3] = c[3];
    }
  }
  mctx.putImageData(pixels, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(map, 0, 0, canvas.width, canvas.height);
  canvas.dataset.drawn = "true";
  $("explanation-caption").textContent =
    `${ex.method} for "${ex.class}"` + (ex.signed ? " (red for, blue against)" : "");
}

async function handle(file) {
  if (!file || state.busy) return;
  const m = currentModel();
  if (!m) return;
  state.busy = true;
  document.body.dataset.done = "false";
  $("explanation").dataset.drawn = "false";
  setStatus(`Asking ${m.name}…`);
  const url = URL.createObjectURL(file);
  const image = $("preview");
  image.src = url;
  try {
    const loaded = new Promise((ok, fail) => {
      image.onload = ok;
      image.onerror = () => fail(new Error("the browser cannot show this file"));
    });
    const base = `/v1/models/${encodeURIComponent(m.name)}`;
    const pred = await post(`${base}/predict?top_k=5`, file);
    drawBars(pred.predictions);
    $("timing").textContent =
      `version ${pred.version}; ${pred.time_ms.total.toFixed(1)} ms on the server`;
    $("result").hidden = false;
    const ex = await post(`${base}/explain?top_k=5`, file);
    await loaded.catch(() => {});
    drawExplanation(image, ex.explanation);
    setStatus(`Top class: ${pred.predictions[0].label}`);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    state.busy = false;
    document.body.dataset.done = "true";
  }
}

function setup() {
  $("model").addEventListener("change", showModelInfo);
  $("file").addEventListener("change", (e) => handle(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    handle(e.dataTransfer.files[0]);
  });
  loadModels().catch((err) => setStatus(`Cannot list the models: ${err.message}`, true));
}

setup();
