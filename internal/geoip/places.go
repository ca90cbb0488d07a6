package geoip

import "github.com/geocdn/geocdn/internal/geo"

// countryPoints places a client known only by its country. The point is
// the country's largest metropolitan area, where most of its users and its
// interconnection are, rather than the geographic centroid a database
// returns (the centroids of Canada, Russia, Australia or Brazil are far
// from almost everybody). The United States is the exception: its largest
// city is on one coast, so it gets the 2020 census mean centre of
// population, in Missouri. Options.Countries overrides any of these.
var countryPoints = map[string]geo.Point{
	// Europe
	"AT": {Lat: 48.21, Lon: 16.37}, // Vienna
	"BE": {Lat: 50.85, Lon: 4.35},  // Brussels
	"BG": {Lat: 42.70, Lon: 23.32}, // Sofia
	"CH": {Lat: 47.38, Lon: 8.54},  // Zurich
	"CZ": {Lat: 50.08, Lon: 14.44}, // Prague
	"DE": {Lat: 50.11, Lon: 8.68},  // Frankfurt (the Rhine-Main and Ruhr hubs)
	"DK": {Lat: 55.68, Lon: 12.57}, // Copenhagen
	"ES": {Lat: 40.42, Lon: -3.70}, // Madrid
	"FI": {Lat: 60.17, Lon: 24.94}, // Helsinki
	"FR": {Lat: 48.86, Lon: 2.35},  // Paris
	"GB": {Lat: 51.51, Lon: -0.13}, // London
	"GR": {Lat: 37.98, Lon: 23.73}, // Athens
	"HU": {Lat: 47.50, Lon: 19.04}, // Budapest
	"IE": {Lat: 53.35, Lon: -6.26}, // Dublin
	"IT": {Lat: 45.46, Lon: 9.19},  // Milan
	"NL": {Lat: 52.37, Lon: 4.90},  // Amsterdam
	"NO": {Lat: 59.91, Lon: 10.75}, // Oslo
	"PL": {Lat: 52.23, Lon: 21.01}, // Warsaw
	"PT": {Lat: 38.72, Lon: -9.14}, // Lisbon
	"RO": {Lat: 44.43, Lon: 26.10}, // Bucharest
	"RU": {Lat: 55.76, Lon: 37.62}, // Moscow
	"SE": {Lat: 59.33, Lon: 18.07}, // Stockholm
	"TR": {Lat: 41.01, Lon: 28.98}, // Istanbul
	"UA": {Lat: 50.45, Lon: 30.52}, // Kyiv
	// Asia
	"AE": {Lat: 25.20, Lon: 55.27},  // Dubai
	"IL": {Lat: 32.09, Lon: 34.78},  // Tel Aviv
	"SA": {Lat: 24.71, Lon: 46.68},  // Riyadh
	"IR": {Lat: 35.69, Lon: 51.39},  // Tehran
	"PK": {Lat: 24.86, Lon: 67.01},  // Karachi
	"IN": {Lat: 28.70, Lon: 77.10},  // Delhi
	"BD": {Lat: 23.81, Lon: 90.41},  // Dhaka
	"CN": {Lat: 31.23, Lon: 121.47}, // Shanghai
	"HK": {Lat: 22.32, Lon: 114.17}, // Hong Kong
	"TW": {Lat: 25.03, Lon: 121.57}, // Taipei
	"JP": {Lat: 35.68, Lon: 139.69}, // Tokyo
	"KR": {Lat: 37.57, Lon: 126.98}, // Seoul
	"SG": {Lat: 1.35, Lon: 103.82},  // Singapore
	"MY": {Lat: 3.14, Lon: 101.69},  // Kuala Lumpur
	"TH": {Lat: 13.76, Lon: 100.50}, // Bangkok
	"VN": {Lat: 10.82, Lon: 106.63}, // Ho Chi Minh City
	"PH": {Lat: 14.60, Lon: 120.98}, // Manila
	"ID": {Lat: -6.21, Lon: 106.85}, // Jakarta
	// Oceania
	"AU": {Lat: -33.87, Lon: 151.21}, // Sydney
	"NZ": {Lat: -36.85, Lon: 174.76}, // Auckland
	// Americas
	"US": {Lat: 37.42, Lon: -92.18},  // mean centre of population (2020), near Hartville, Missouri
	"CA": {Lat: 43.65, Lon: -79.38},  // Toronto
	"MX": {Lat: 19.43, Lon: -99.13},  // Mexico City
	"BR": {Lat: -23.55, Lon: -46.63}, // São Paulo
	"AR": {Lat: -34.60, Lon: -58.38}, // Buenos Aires
	"CL": {Lat: -33.45, Lon: -70.67}, // Santiago
	"CO": {Lat: 4.71, Lon: -74.07},   // Bogotá
	"PE": {Lat: -12.05, Lon: -77.04}, // Lima
	// Africa
	"ZA": {Lat: -26.20, Lon: 28.05}, // Johannesburg
	"NG": {Lat: 6.52, Lon: 3.38},    // Lagos
	"EG": {Lat: 30.04, Lon: 31.24},  // Cairo
	"KE": {Lat: -1.29, Lon: 36.82},  // Nairobi
	"MA": {Lat: 33.57, Lon: -7.59},  // Casablanca
}

// continentPoints places a client known only by its continent (MaxMind
// continent codes): the continent's busiest interconnection hub, or for
// North America a central one so neither coast is penalised twice.
// Antarctica has none: its few clients take the default.
var continentPoints = map[string]geo.Point{
	"AF": {Lat: -26.20, Lon: 28.05},  // Johannesburg
	"AS": {Lat: 1.35, Lon: 103.82},   // Singapore
	"EU": {Lat: 50.11, Lon: 8.68},    // Frankfurt
	"NA": {Lat: 41.88, Lon: -87.63},  // Chicago
	"OC": {Lat: -33.87, Lon: 151.21}, // Sydney
	"SA": {Lat: -23.55, Lon: -46.63}, // São Paulo
}
