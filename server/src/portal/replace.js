// "Replace this device", on a device's page: a replacement code for the installation that takes
// the device's place (a broken or lost handset's successor). When the new installation pairs
// with it, it gets this device's license, configuration, name and notes in one step, and this
// device is told and disconnected; no second license is used. Creating the code changes nothing
// yet: this device keeps working until the code is used, and a new code replaces the previous one.

import { post, segment } from "./api.js";
import { errorMessage, formatTime, h } from "./ui.js";

/** How long the code stays valid: the choices offered (the API takes 10 s to 7 days). */
const VALIDITY_CHOICES = [
  [3600, "1 hour"],
  [86400, "1 day"],
  [604800, "7 days"],
];

export function replaceSection(base, device) {
  const validity = h(
    "select",
    { id: "replace-validity" },
    VALIDITY_CHOICES.map(([seconds, label]) => h("option", { value: seconds }, label)),
  );
  const create = h("button", { type: "button", class: "button secondary", id: "replace-device" }, "Create replacement code");
  const status = h("p", { id: "replace-status", class: "muted", role: "status" });
  const shown = h("div", { id: "replace-code" });
  create.addEventListener("click", async () => {
    create.disabled = true;
    status.textContent = "Creating…";
    try {
      const code = await post(`${base}/devices/${segment(device.id)}/replace?qr=png`, {
        validity_seconds: Number(validity.value),
      });
      shown.replaceChildren(
        h("img", {
          id: "replace-qr",
          class: "qr",
          src: `data:image/png;base64,${code.qr_png_base64}`,
          alt: `QR code that replaces ${device.name}, valid until ${formatTime(code.expires_at)}`,
          width: 256,
          height: 256,
        }),
        h("p", {}, "Code ", h("code", { id: "replace-code-text" }, code.code), ", valid until ", h("strong", {}, formatTime(code.expires_at)), "."),
        h("p", { class: "payload" }, h("code", {}, code.payload_uri)),
      );
      status.textContent =
        "Scan it with the new installation. It is shown only now: a new code replaces this one.";
    } catch (error) {
      status.textContent = errorMessage(error);
    } finally {
      create.disabled = false;
    }
  });
  return h(
    "section",
    { class: "card", id: "device-replace", "aria-labelledby": "device-replace-title" },
    h("h2", { id: "device-replace-title" }, "Replace this device"),
    h(
      "p",
      { class: "muted" },
      "For a broken or lost handset: the new installation that scans the replacement code takes this device's license, configuration, name and notes in one step, and this device is disconnected. No second license is used; until the code is used, this device keeps working.",
    ),
    h("label", { for: "replace-validity" }, "Code valid for ", validity),
    create,
    status,
    shown,
  );
}
