"""Simulated hardware at register and byte level: the I2C bus, the DS1307 RTC, the soil-moisture ADC."""
