/**
 * The devices a virtual Pico can have, by the name `--device NAME` takes. Each module exports
 * attach(board, opts) -> { save?(), close?() } (README.md, "Devices"). The defaults are the parts every soil
 * board has; `--no-device NAME` leaves one out.
 */
export const DEVICES = {
  ds1307: './ds1307.mjs',
  soil: './soil_probe.mjs',
  led: './led.mjs',
  sdcard: './sdcard.mjs',
  wire: './wire.mjs',              // PAIR: an I2C wire to another virtual Pico
};

export const DEFAULT_DEVICES = ['ds1307', 'soil', 'led'];

export async function load(name) {
  const where = DEVICES[name];
  if (!where) throw new Error(`no device '${name}' (devices: ${Object.keys(DEVICES).join(', ')})`);
  return import(new URL(where, import.meta.url));
}
