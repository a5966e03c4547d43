// A local stand-in for the network sources the UI's loads read: the burrow camera feed
// (`/db/hole_camera/{MM-DD-YYYY}`, `/db/hole_camera_resnet_detection/{MM-DD-YYYY}`, frames
// under `/hole-cam/static/`), openSenseMap (`/boxes`) and NASA MMGIS (`/mmgis/*.json`), on
// 127.0.0.1. Frames are JPEGs the test makes itself; the others are the repository's fixtures.

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Starts the server. `camera` is `{ 'MM-DD-YYYY': { rows, detections, frames: Map(path → bytes) } }`.
 * Answers `{ url, close, hits }`.
 */
export async function startFeed({ root, camera }) {
  const boxes = readFileSync(join(root, 'fixtures/sensebox/sample_data.json'));
  const mmgis = {
    'M20_waypoints.json': readFileSync(join(root, 'fixtures/rover/M20_waypoints.json')),
    'M20_traverse.json': readFileSync(join(root, 'fixtures/rover/M20_traverse.json')),
  };
  const hits = [];
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://feed').pathname);
    hits.push(path);
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'content-length': body.length });
      res.end(body);
    };
    const json = (value) => send(200, 'application/json', Buffer.from(JSON.stringify(value)));
    let m;
    if (path === '/boxes') return send(200, 'application/json', boxes);
    if ((m = /^\/mmgis\/(M20_(?:waypoints|traverse)\.json)$/.exec(path))) return send(200, 'application/json', mmgis[m[1]]);
    if ((m = /^\/db\/hole_camera\/(\d{2}-\d{2}-\d{4})$/.exec(path))) return json(camera[m[1]]?.rows ?? []);
    if ((m = /^\/db\/hole_camera_resnet_detection\/(\d{2}-\d{2}-\d{4})$/.exec(path))) {
      const rows = camera[m[1]]?.detections;
      return rows ? json(rows) : send(404, 'application/json', Buffer.from('{"error":"no detections"}'));
    }
    if (path.startsWith('/hole-cam/static/')) {
      for (const day of Object.values(camera)) {
        const bytes = day.frames.get(path);
        if (bytes) return setTimeout(() => send(200, 'image/jpeg', bytes), day.delayMs ?? 0);
      }
    }
    return send(404, 'text/plain', Buffer.from('not found'));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}

/**
 * A camera day in the feed's format: `count` frames of `width`×`height` one minute apart from
 * noon UTC, with probabilities that differ, every third frame with a detection box; each frame
 * answered after `delayMs` (a slow camera, so that a load runs long enough to be watched).
 */
export function cameraDay({ date, jpegs, width, height, delayMs = 0 }) {
  const [y, mo, d] = date.split('-').map(Number);
  const key = `${String(mo).padStart(2, '0')}-${String(d).padStart(2, '0')}-${y}`;
  const rows = [];
  const detections = [];
  const frames = new Map();
  jpegs.forEach((bytes, i) => {
    const ms = Date.UTC(y, mo - 1, d, 12, i, 0);
    const file = `snapshot_${(ms / 1000).toFixed(5)}.jpg`;
    const path = `/mnt/nfs/hole-cam/${y}/${mo}/${d}/${file}`;
    const prob = Number(((i * 37) % 100 / 100 + 0.005).toFixed(3));
    rows.push({ timestamp: ms, path, hasTurtle: prob > 0.5 ? 1 : 0, xpos: -1, ypos: -1, prob, model_name: 'resnet-test' });
    frames.set(`/hole-cam/static/${y}/${mo}/${d}/${file}`, bytes);
    if (i % 3 === 0) {
      detections.push({
        timestamp: ms, model_name: 'resnet-test', path, prob, class_name: 'turtle', class_number: 1,
        x1: width * 0.25, y1: height * 0.3, x2: width * 0.6, y2: height * 0.8,
      });
    }
  });
  return { key, rows, detections, frames, delayMs, best: rows.reduce((a, b) => (b.prob > a.prob ? b : a)) };
}
