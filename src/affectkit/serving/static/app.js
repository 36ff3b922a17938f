"use strict";
// Demo page: send a photo to /v1/predict (or /v1/explain, to see where the model looks), or the camera's frames
// to the /v1/stream WebSocket, and draw what comes back. Everything stays on this server.

// Same colours as the CLI's annotated images (affectkit/inference/annotate.py), one per class.
const CLASS_COLOURS = ["#9e9e9e", "#ffc107", "#2196f3", "#9c27b0", "#607d8b", "#4caf50", "#f44336", "#ff7043"];
const MAX_CANVAS_WIDTH = 640;
const CAMERA_FRAME_GAP_MS = 100;  // pause after each answer: the camera stream never queues frames on the server
const CAMERA_SMOOTHING = 0.5;  // weight of the newest frame in each face's running average
const MONITOR_REFRESH_MS = 15000;
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const setStatus = (text) => { $("status").textContent = text; };

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function errorText(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    return response.statusText;
  }
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    const url = URL.createObjectURL(file);
    img.onload = () => { URL.revokeObjectURL(url); resolve(img); };
    img.onerror = () => { URL.revokeObjectURL(url); reject(new Error("the browser cannot display this image")); };
    img.src = url;
  });
}

// img: an <img> or a <canvas> holding a camera frame.
function clearPhoto() {
  const canvas = $("canvas");
  canvas.width = 0;
  canvas.height = 0;
}

function drawPhoto(img, faces) {
  const canvas = $("canvas");
  const [width, height] = [img.naturalWidth || img.width, img.naturalHeight || img.height];
  const scale = Math.min(1, MAX_CANVAS_WIDTH / width);
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const font = Math.max(12, Math.round(canvas.width / 40));
  ctx.font = `${font}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  faces.forEach((face, i) => {
    if (!face.box) return;  // --no-detect: the whole photo is the face
    const [x1, y1, x2, y2] = face.box.map((v) => v * scale);
    const colour = faceColour(face);
    ctx.lineWidth = Math.max(2, font / 6);
    ctx.strokeStyle = colour;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `${i + 1}: ${faceLabel(face)}`;
    const width = ctx.measureText(label).width + 8;
    const top = y1 - font - 6 >= 0 ? y1 - font - 6 : y1;
    ctx.fillStyle = colour;
    ctx.fillRect(x1, top, width, font + 6);
    ctx.fillStyle = "#000";
    ctx.fillText(label, x1 + 4, top + 3);
  });
}

// A valence/arousal model (trained on faces without a class) gives no expression: its faces are white. A face the
// server abstains on (its confidence under the served threshold) is grey.
function faceColour(face) {
  if (face.expression === null) return "#fff";
  return face.abstained ? "#787878" : CLASS_COLOURS[face.expression_id % CLASS_COLOURS.length];
}

function faceLabel(face) {
  if (face.expression === null) return `V ${face.valence.toFixed(2)} A ${face.arousal.toFixed(2)}`;
  const label = `${face.expression} ${face.confidence.toFixed(2)}`;
  return face.abstained ? `unsure (${label})` : label;
}

function svgElement(name, attributes, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Russell's circumplex: valence left to right, arousal bottom to top, both in [-1, 1].
function drawCircumplex(faces) {
  const svg = $("circumplex");
  svg.replaceChildren();
  const c = 120, r = 95;
  svg.append(
    svgElement("circle", { cx: c, cy: c, r, fill: "#fafafa", stroke: "#999" }),
    svgElement("line", { x1: c - r, y1: c, x2: c + r, y2: c, stroke: "#bbb" }),
    svgElement("line", { x1: c, y1: c - r, x2: c, y2: c + r, stroke: "#bbb" }),
    svgElement("text", { x: c, y: 12, "text-anchor": "middle", "font-size": 11 }, "aroused"),
    svgElement("text", { x: c, y: 236, "text-anchor": "middle", "font-size": 11 }, "calm"),
    svgElement("text", { x: 236, y: c - 4, "text-anchor": "end", "font-size": 11 }, "pleasant"),
    svgElement("text", { x: 4, y: c - 4, "font-size": 11 }, "unpleasant"),
  );
  // An expression model (trained on faces without valence/arousal) places no face here.
  if (faces.length && faces.every((face) => face.valence === null)) {
    svg.append(svgElement("text", { x: c, y: c + 20, "text-anchor": "middle", "font-size": 11 },
      "this model predicts expressions only"));
  }
  faces.forEach((face, i) => {
    if (face.valence === null) return;
    const x = c + face.valence * r, y = c - face.arousal * r;
    const colour = faceColour(face);
    svg.append(
      svgElement("circle", { class: "dot", cx: x, cy: y, r: 6, fill: colour, stroke: "#000" }),
      svgElement("text", { x: x + 8, y: y + 4, "font-size": 11 }, String(i + 1)),
    );
  });
}

function barRow(name, p, colour) {
  const row = document.createElement("div");
  row.className = "bar-row";
  const label = document.createElement("span");
  label.textContent = name;
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${(p * 100).toFixed(1)}%`;
  fill.style.background = colour;
  bar.append(fill);
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = p.toFixed(2);
  row.append(label, bar, value);
  return row;
}

function listFaces(faces) {
  const list = $("faces");
  list.replaceChildren();
  if (faces.length === 0) {
    list.textContent = "No face found in this photo.";
    return;
  }
  faces.forEach((face, i) => {
    const block = document.createElement("div");
    block.className = "face";
    const title = document.createElement("h3");
    title.textContent = `Face ${i + 1}: ${face.expression === null ? "valence/arousal model"
      : `${face.abstained ? "unsure, perhaps " : ""}${face.expression} (${(face.confidence * 100).toFixed(0)}%)`}`;
    const va = document.createElement("div");
    va.className = "va";
    va.textContent = face.valence === null ? "no valence/arousal (an expression model)"
      : `valence ${face.valence.toFixed(2)}, arousal ${face.arousal.toFixed(2)}`;
    block.append(title);
    const unlearnt = [];
    Object.entries(face.probabilities).forEach(([name, p], k) => {
      if (trainedClasses && !trainedClasses.includes(name)) unlearnt.push(name);
      else block.append(barRow(name, p, CLASS_COLOURS[k % CLASS_COLOURS.length]));
    });
    if (unlearnt.length) {
      const note = document.createElement("div");
      note.className = "unlearnt";
      note.textContent = `not learnt (absent from its training data): ${unlearnt.join(", ")}`;
      block.append(note);
    }
    block.append(va);
    if (face.explanation) {  // /v1/explain: the face under its map
      const figure = document.createElement("figure");
      figure.className = "explanation";
      const map = document.createElement("img");
      map.src = face.explanation.image;
      map.alt = `where the model finds the evidence for ${face.explanation.target}`;
      const caption = document.createElement("figcaption");
      caption.textContent = `evidence for ${face.explanation.target} (${face.explanation.method})`;
      figure.append(map, caption);
      block.append(figure);
    }
    list.append(block);
  });
}

let shownPhoto = null;  // the last photo sent: asked again when the explanation settings change

async function predict(file) {
  shownPhoto = file;
  setStatus(`predicting ${file.name}…`);
  const body = new FormData();
  body.append("files", file, file.name);
  try {
    // Explained: the same answer, each face with its map (Grad-CAM: a backward pass more; occlusion: a forward pass
    // per place of the patch; integrated gradients: a forward and a backward pass per point of the path).
    const route = $("explain").checked
      ? `/v1/explain?method=${encodeURIComponent($("explain-method").value)}` : "/v1/predict";
    const response = await fetch(route, { method: "POST", headers: authHeaders(), body });
    if (!response.ok) {
      setStatus(`error: ${await errorText(response)}`);
      return;
    }
    const faces = (await response.json()).results[0].faces;
    // The server reads formats some browsers cannot show (HEIC in Chrome): the answer stands without the picture.
    const img = await loadImage(file).catch(() => null);
    if (img) drawPhoto(img, faces);
    else clearPhoto();
    drawCircumplex(faces);
    listFaces(faces);
    const undrawn = img ? "" : "; this browser cannot display the photo, so it is not drawn";
    setStatus(`done: ${faces.length} face(s)${undrawn}`);
    refreshMonitor();
  } catch (err) {
    setStatus(`error: ${err.message}`);
  }
}

// The camera: one frame in flight at a time; the next is grabbed when the answer to the last has been drawn.
let camera = null;

function streamUrl() {
  const key = $("api-key").value.trim();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const params = new URLSearchParams({ smooth: String(CAMERA_SMOOTHING) });
  if (key) params.set("api_key", key);  // a browser cannot set headers on a WebSocket
  return `${scheme}://${location.host}/v1/stream?${params}`;
}

function stopCamera(reason) {
  if (!camera) return;
  const { socket, stream, frames } = camera;
  camera = null;
  socket.close();
  stream.getTracks().forEach((track) => track.stop());
  $("camera").textContent = "Use the camera";
  setStatus(reason || `camera stopped after ${frames} frame(s)`);
}

async function startCamera() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640 }, audio: false });
  } catch (err) {
    setStatus(`camera: ${err.message}`);
    return;
  }
  const video = $("video");
  video.srcObject = stream;
  await video.play();
  const grab = document.createElement("canvas");
  const socket = new WebSocket(streamUrl());
  camera = { socket, stream, frames: 0 };
  $("camera").textContent = "Stop the camera";
  setStatus("camera: connecting…");

  const sendFrame = () => {
    if (!camera || socket.readyState !== WebSocket.OPEN) return;
    grab.width = video.videoWidth;
    grab.height = video.videoHeight;
    grab.getContext("2d").drawImage(video, 0, 0);
    grab.toBlob((blob) => { if (blob && camera && socket.readyState === WebSocket.OPEN) socket.send(blob); },
                "image/jpeg", 0.85);
  };
  socket.onopen = sendFrame;
  socket.onmessage = (event) => {
    if (!camera) return;
    const answer = JSON.parse(event.data);
    if (answer.error) {
      setStatus(`error: ${answer.error}`);
    } else {
      camera.frames += 1;
      drawPhoto(grab, answer.faces);  // grab still holds the frame this answer is about
      drawCircumplex(answer.faces);
      listFaces(answer.faces);
      setStatus(`camera: frame ${camera.frames}, ${answer.faces.length} face(s)`);
    }
    setTimeout(sendFrame, CAMERA_FRAME_GAP_MS);
  };
  socket.onclose = (event) => stopCamera(event.reason ? `camera stopped: ${event.reason}` : undefined);
  socket.onerror = () => stopCamera("camera stopped: the connection to the server failed");
}

// The classes the served model learnt (GET /v1/model); the others' probability is always 0, so they get no bar.
let trainedClasses = null;

async function showModel() {
  const response = await fetch("/v1/model", { headers: authHeaders() });
  if (response.ok) {
    const info = await response.json();
    trainedClasses = info.trained_classes;
    $("model").textContent = `${info.name} · ${info.input_size}px · ${info.backend}`;
    if (info.warning) {  // e.g. a model trained on synthetic demo faces
      $("warning").textContent = info.warning;
      $("warning").hidden = false;
    }
  }
}

// The server's own view of its health: drift of its outputs (GET /v1/drift) and its accuracy on the faces whose
// truth clients reported (GET /v1/performance).
function monitorText(drift, performance) {
  const parts = [];
  if (!drift) {
    parts.push("output drift: unavailable (API key?)");
  } else if (drift.status === "no reference") {
    parts.push("output drift: this model carries no reference profile");
  } else if (drift.status === "collecting") {
    parts.push(`output drift: collecting (${drift.window_faces} of ${drift.min_faces} faces)`);
  } else {
    const shifted = drift.shifted.length ? ` in ${drift.shifted.join(", ")}` : "";
    parts.push(`output drift: ${drift.status}${shifted} over the last ${drift.window_faces} faces`);
  }
  if (performance && performance.reports) {
    const accuracy = performance.expression ? `, accuracy ${performance.expression.accuracy.toFixed(2)}` : "";
    parts.push(`reported truth: ${performance.reports} report(s)${accuracy}`);
  } else if (performance) {
    parts.push("reported truth: no reports yet");
  }
  return `monitoring · ${parts.join(" · ")}`;
}

async function refreshMonitor() {
  const read = async (url) => {
    const response = await fetch(url, { headers: authHeaders() });
    return response.ok ? response.json() : null;
  };
  try {
    const [drift, performance] = await Promise.all([read("/v1/drift"), read("/v1/performance")]);
    $("monitor").textContent = monitorText(drift, performance);
  } catch {
    $("monitor").textContent = "monitoring · the server did not answer";
  }
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => { if (e.target.files[0]) predict(e.target.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) predict(e.dataTransfer.files[0]);
  });
  $("camera").addEventListener("click", () => (camera ? stopCamera() : startCamera()));
  for (const setting of ["explain", "explain-method"]) {
    $(setting).addEventListener("change", () => { if (shownPhoto && !camera) predict(shownPhoto); });
  }
  drawCircumplex([]);
  showModel();
  refreshMonitor();
  setInterval(refreshMonitor, MONITOR_REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", setUp);
