/**
 * The capacitive soil-moisture probe on ADC0 (GP26, boards.py PICO "adc"): an analog voltage the RP2040's 12-bit
 * ADC converts. The model sets the conversion result rp2040js returns (0..4095; `read_u16()` scales it to 16 bits,
 * 2048 -> 32776).
 *
 *   --opt soil.value=1625              a constant reading (default 1625, ~26000 as read_u16)
 *   --opt soil.dry=1400:2600:600       drying: from 1400 to 2600 over 600 s of emulated time, then holding
 *                                      (a capacitive probe reads higher as the soil dries)
 *   --opt soil.channel=0               another ADC input (0..3 = GP26..GP29)
 */
const MAX = 4095;

function clamp(v) {
  return Math.max(0, Math.min(MAX, Math.round(v)));
}

/** The reading at emulated time `seconds` for the options given. */
export function curve(opts) {
  if (opts.dry) {
    const [from, to, span] = String(opts.dry).split(':').map(Number);
    if ([from, to, span].some(Number.isNaN) || span <= 0) throw new Error(`soil.dry=${opts.dry}: write FROM:TO:SECONDS`);
    return (seconds) => clamp(from + ((to - from) * Math.min(seconds, span)) / span);
  }
  const value = Number(opts.value ?? 1625);
  if (Number.isNaN(value)) throw new Error(`soil.value=${opts.value}: a number 0..4095`);
  return () => clamp(value);
}

export function attach(board, opts = {}) {
  const channel = Number(opts.channel ?? 0);
  const valueAt = curve(opts);
  const { adc } = board.mcu;
  const previous = adc.onADCRead;
  adc.onADCRead = (ch) => {
    if (ch === channel) adc.channelValues[channel] = valueAt(board.clock.nanos / 1e9);
    previous(ch);
  };
  adc.channelValues[channel] = valueAt(0);
  board.log(`soil probe: ADC${channel} (GP${26 + channel}) ${opts.dry ? `drying ${opts.dry}` : `= ${valueAt(0)}`}`);
  return {};
}
