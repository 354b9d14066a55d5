"""Pin maps for the MicroPython boards (hardware/README.md has the wiring tables).

One dict per board, read once by `hal.py`. Bus ids are the chip's peripheral numbers (`machine.I2C(id)`,
`machine.SPI(id)`); pins are GPIO numbers, or a name `machine.Pin` accepts ("LED" on a Pico / Pico W). `None` means
"not fitted".

The heartbeat wire of a redundant pair has its OWN I2C peripheral (`hb_i2c`): a standby is an I2C *target* there,
and an ESP32 cannot be controller (to the DS1307) and target on one peripheral. The master uses the same peripheral
as a controller, so one wiring table serves both roles.
"""

PICO = {
    "name": "pico",
    "rtc_i2c": 0, "rtc_sda": 4, "rtc_scl": 5,           # GP4 pin 6, GP5 pin 7 (pull-ups to 3.3 V)
    "hb_i2c": 1, "hb_sda": 6, "hb_scl": 7,              # GP6 pin 9, GP7 pin 10: pair wire (SDA, SCL, GND)
    "sd_spi": 1, "sd_sck": 10, "sd_mosi": 11, "sd_miso": 12, "sd_cs": 13,
    "adc": 26, "adc_atten": None,                       # GP26 / ADC0 pin 31; the RP2040 ADC has no attenuator
    "led": "LED",                                       # Pico: GP25; Pico W: the CYW43's WL_GPIO0, same name
    "wdt_max_ms": 8388,                                 # RP2040 watchdog limit
    "wdt_ctrl": 0x40058000,                             # its CTRL register (datasheet 4.7.6): bit 30 ENABLE
}

# ESP32-DevKitC (ESP32-WROOM-32). Pins chosen away from the strapping pins that matter at boot (GPIO0, 2, 12)
# and from the flash pins (GPIO6-11). GPIO34 is input-only and on ADC1, which keeps working with Wi-Fi on.
ESP32 = {
    "name": "esp32",
    "rtc_i2c": 0, "rtc_sda": 21, "rtc_scl": 22,         # the DevKitC's conventional I2C pins
    "hb_i2c": 1, "hb_sda": 25, "hb_scl": 26,            # second peripheral for the pair wire
    "sd_spi": 2, "sd_sck": 18, "sd_mosi": 23, "sd_miso": 19, "sd_cs": 5,   # VSPI's native pins
    "adc": 34, "adc_atten": 3,                          # ADC.ATTN_11DB (value 3): full 0-3.3 V range
    "led": None,                                        # the DevKitC has no user LED (wire one to GPIO2 if wanted)
    "wdt_max_ms": 60000,
    "wdt_ctrl": None,                                   # the task watchdog cannot be stopped from Python
}

BOARDS = {"pico": PICO, "picow": PICO, "esp32": ESP32}


def pins_for(config):
    """The pin map for a config dict: `config["board_type"]` names one above; `config["pins"]` overrides keys."""
    name = config.get("board_type", "pico")
    if name not in BOARDS:
        raise ValueError("unknown board_type %r (pico, picow, esp32)" % (name,))
    pins = dict(BOARDS[name])
    pins.update(config.get("pins") or {})
    return pins
